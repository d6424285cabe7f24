"""The process harness itself (scripts/label_studio.py), without starting Label Studio:
stopping whole process groups, failing fast with the log, refusing busy ports, the env."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.label_studio import (
    ServerStartError,
    _stop_process_group,
    _wait_until,
    label_studio_env,
    label_studio_executable,
    running_backend,
    start_command,
)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as ended)."""
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, StopIteration, ProcessLookupError):
        return False
    return "Z" not in state.split()[1]


def test_missing_label_studio_install_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make label-studio"):
        label_studio_executable(tmp_path / "no-venv")


def test_stop_ends_the_children_of_the_server_too(tmp_path):
    # Like Django's runserver or gunicorn: a parent that forks a long-lived child.
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], start_new_session=True
    )
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert alive(child)

    _stop_process_group(parent, grace_s=5)

    assert parent.poll() is not None
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the forked child outlived the stop"


def test_a_server_that_dies_fails_at_once_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("booting\nImproperlyConfigured: no database\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    start = time.monotonic()
    with pytest.raises(ServerStartError, match="exited with code 3") as caught:
        _wait_until(lambda: False, process, log, "the server", timeout_s=60)
    assert time.monotonic() - start < 30, "waited for the timeout instead of noticing the exit"
    assert "ImproperlyConfigured: no database" in str(caught.value)


def test_a_server_that_never_answers_times_out_naming_itself(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(ServerStartError, match="the backend did not answer within 1 s"):
            _wait_until(lambda: False, process, tmp_path / "none.log", "the backend", timeout_s=1)
    finally:
        process.kill()
        process.wait()


def test_backend_refuses_a_port_already_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with (
            pytest.raises(ServerStartError, match=f"port {port} is already in use"),
            running_backend(model_dir=tmp_path / "models", port=port),
        ):
            pass


def test_label_studio_env_allows_local_backends_and_isolates_its_venv(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTUAL_ENV", "/work/main/.venv")
    monkeypatch.setenv("PYTHONPATH", "/work/main")
    env = label_studio_env(tmp_path, {"LABEL_STUDIO_DEBUG": "1"})
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(tmp_path)
    assert env["ML_BLOCK_LOCAL_IP"] == "false" and env["SSRF_PROTECTION_ENABLED"] == "false"
    assert env["LATEST_VERSION_CHECK"] == "false"
    assert "VIRTUAL_ENV" not in env and "PYTHONPATH" not in env
    assert env["LABEL_STUDIO_DEBUG"] == "1"
    # The batched prediction import (big projects), unless the caller says otherwise.
    flag = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"
    assert env[flag] == "true"
    assert label_studio_env(tmp_path, {flag: "false"})[flag] == "false"
    monkeypatch.setenv(flag, "false")
    assert label_studio_env(tmp_path)[flag] == "false"


def test_a_password_that_starts_with_a_dash_reaches_label_studio_as_a_value():
    # token_urlsafe() starts with "-" about one time in 64: "--password -x" made Label Studio's
    # argparse stop with "expected one argument" (seen in CI). Parse the command with the same
    # option names Label Studio's "start" declares.
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--no-browser", action="store_true")
    for flag in ("--internal-host", "--port", "--username", "--password", "--user-token"):
        parser.add_argument(flag)
    parser.add_argument("--enable-legacy-api-token", action="store_true")
    command = start_command("/venv/bin/label-studio", 8081, "-admin@x", "-pw_-", "-tok")
    parsed = parser.parse_args(command[1:])
    assert (parsed.username, parsed.password, parsed.user_token) == ("-admin@x", "-pw_-", "-tok")
    assert parsed.port == "8081" and parsed.command == "start"
