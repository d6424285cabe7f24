"""Start a real Label Studio and the AutoAL backend as local processes, for tests and the demo.

Label Studio pins many packages, so it lives in its own virtual environment
(``$AUTOAL_LS_VENV``, default ``~/.cache/autoal-backend/label-studio-1.23.2``, made by
``make label-studio``). Both servers bind to 127.0.0.1, run in their own process group (so a
stop also ends the children they fork) and are stopped by their context managers.

As a CLI (``python -m scripts.label_studio --help``) it starts Label Studio alone, prints the
URL and the credentials, and waits for Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

LS_VERSION = "1.23.2"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_USERNAME = "autoal@autoal.local"


class ServerStartError(RuntimeError):
    """A server process exited or did not answer in time; the message carries its log tail."""


def default_ls_venv() -> Path:
    """Where ``make label-studio`` installs Label Studio (``$AUTOAL_LS_VENV`` overrides)."""
    configured = os.environ.get("AUTOAL_LS_VENV")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "autoal-backend" / f"label-studio-{LS_VERSION}"


def label_studio_executable(venv: Path | None = None) -> Path:
    """The ``label-studio`` entry point of the venv; a clear error when it is missing."""
    venv = venv or default_ls_venv()
    executable = venv / "bin" / "label-studio"
    if not executable.exists():
        raise FileNotFoundError(
            f"Label Studio is not installed at {venv} (expected {executable}); "
            "run `make label-studio` or set AUTOAL_LS_VENV to a venv with "
            f"label-studio=={LS_VERSION}"
        )
    return executable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process_group(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the whole group (Django's and gunicorn's children included), then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)


def _wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen,
    log_path: Path,
    what: str,
    timeout_s: float,
) -> float:
    """Poll ``ready()`` until it is true; seconds it took. Fails fast if the process dies."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if process.poll() is not None:
            raise ServerStartError(
                f"{what} exited with code {process.returncode} before it answered; "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            if ready():
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise ServerStartError(
        f"{what} did not answer within {timeout_s:.0f} s; log {log_path}:\n{_log_tail(log_path)}"
    )


@dataclass
class LabelStudioServer:
    """A running Label Studio: where it is and how to log in."""

    url: str
    port: int
    username: str
    password: str
    token: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen
    startup_seconds: float

    @property
    def headers(self) -> dict[str, str]:
        """REST headers with the legacy token (enabled at start)."""
        return {"Authorization": f"Token {self.token}"}

    def client(self):
        """A label-studio-sdk client for this server."""
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.url, api_key=self.token)

    def stop(self) -> None:
        _stop_process_group(self.process)


# Label Studio 1.23's prediction import, behind a feature flag that is off by default, recounts
# the counters of *every* task of the project on each import (data_import/api.py,
# _create_legacy): 3.9 s per push of 100 predictions on a 100k-task project, growing with the
# project. The flag switches to its batched import, which recounts only the tasks imported to
# (benchmarks.ls_scale measures both; README "Big projects" tells operators to set it).
BIG_PROJECT_ENV = {"fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short": "true"}


def label_studio_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Label Studio's environment: data under ``data_dir``, local ML backends allowed
    (1.23 refuses loopback/private URLs for ML backends and webhooks by default)."""
    env = dict(os.environ)
    # The repo's venv must not leak into Label Studio's own interpreter.
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            # Tasks may carry local files served by LS (image uploads); harmless otherwise.
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # A local test/demo server phones nobody: no PyPI version check at start (slow or hanging
    # offline), no analytics, no error reports to LS's Sentry. The caller's env still wins.
    for name, value in (
        ("LATEST_VERSION_CHECK", "false"),
        ("COLLECT_ANALYTICS", "false"),
        ("SENTRY_DSN", ""),
        ("FRONTEND_SENTRY_DSN", ""),
        *BIG_PROJECT_ENV.items(),
    ):
        env.setdefault(name, value)
    if extra:
        env.update(extra)
    return env


def start_command(
    executable: Path | str, port: int, username: str, password: str, token: str
) -> list[str]:
    """The ``label-studio start`` command line. Values go in ``--flag=value`` form: a random
    password may start with "-" (``token_urlsafe``), which argparse would take for a flag."""
    return [
        str(executable), "start", "--no-browser",
        "--internal-host", "127.0.0.1", f"--port={port}",
        f"--username={username}", f"--password={password}",
        f"--user-token={token}", "--enable-legacy-api-token",
    ]  # fmt: skip


@contextlib.contextmanager
def running_label_studio(
    *,
    data_dir: Path | str | None = None,
    port: int | None = None,
    username: str = DEFAULT_USERNAME,
    password: str | None = None,
    token: str | None = None,
    venv: Path | None = None,
    timeout_s: float = 240.0,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[LabelStudioServer]:
    """Start Label Studio on 127.0.0.1, wait until its API accepts the token, stop on exit.

    ``data_dir`` None means a temporary directory removed afterwards; a given one is kept
    (the demo reuses its database, user and token across runs). The first start on a fresh
    data dir runs every migration (~25-45 s on 2 cores); later starts take ~15 s.
    """
    executable = label_studio_executable(venv)
    port = port or free_port()
    if port_in_use(port):
        raise ServerStartError(f"port {port} is already in use on 127.0.0.1; pick another")
    password = password or secrets.token_urlsafe(12)
    # Legacy tokens are stored as given; Label Studio ignores ones shorter than 6 characters.
    token = token or secrets.token_hex(20)
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="autoal-ls-")))
        else:
            data_path = Path(data_dir)
            data_path.mkdir(parents=True, exist_ok=True)
        log_path = data_path / "label-studio.log"
        log = stack.enter_context(open(log_path, "ab"))
        command = start_command(executable, port, username, password, token)
        process = subprocess.Popen(
            command,
            cwd=data_path,
            env=label_studio_env(data_path, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(_stop_process_group, process)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Token {token}"}

        def api_ready() -> bool:
            # /health answers before the user and token exist: ask an authenticated endpoint.
            reply = requests.get(f"{url}/api/current-user/whoami", headers=headers, timeout=5)
            return reply.status_code == 200

        seconds = _wait_until(api_ready, process, log_path, "Label Studio", timeout_s)
        yield LabelStudioServer(
            url=url,
            port=port,
            username=username,
            password=password,
            token=token,
            data_dir=data_path,
            log_path=log_path,
            process=process,
            startup_seconds=seconds,
        )


@dataclass
class BackendServer:
    """A running AutoAL backend (``_wsgi.py``)."""

    url: str
    port: int
    model_dir: Path
    log_path: Path
    process: subprocess.Popen
    startup_seconds: float

    def stop(self) -> None:
        _stop_process_group(self.process)


def backend_env(
    label_studio_url: str | None,
    api_key: str | None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # Tests and the demo never reach a model hub: the encoders come from offline packages.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    if label_studio_url:
        env["LABEL_STUDIO_URL"] = label_studio_url
    if api_key:
        env["LABEL_STUDIO_API_KEY"] = api_key
    if extra:
        env.update(extra)
    return env


@contextlib.contextmanager
def running_backend(
    *,
    model_dir: Path | str,
    label_studio_url: str | None = None,
    api_key: str | None = None,
    port: int | None = None,
    python: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout_s: float = 120.0,
) -> Iterator[BackendServer]:
    """Start ``python _wsgi.py --port P --model-dir D`` on 127.0.0.1 and wait for /health.

    The backend keeps its state under ``model_dir``: start it again with the same directory
    to test that a restart keeps the rounds it has run.
    """
    model_path = Path(model_dir)
    model_path.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if port_in_use(port):
        raise ServerStartError(f"port {port} is already in use on 127.0.0.1; pick another")
    log_path = log_path or model_path / "backend.log"
    wsgi = REPO_ROOT / "_wsgi.py"
    if not wsgi.exists():
        raise FileNotFoundError(f"the backend entry point {wsgi} does not exist")
    command = [
        python or sys.executable, str(wsgi),
        "--host", "127.0.0.1", "--port", str(port), "--model-dir", str(model_path),
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(log_path, "ab"))
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=backend_env(label_studio_url, api_key, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(_stop_process_group, process)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            return requests.get(f"{url}/health", timeout=2).status_code == 200

        seconds = _wait_until(healthy, process, log_path, "the backend", timeout_s)
        yield BackendServer(
            url=url,
            port=port,
            model_dir=model_path,
            log_path=log_path,
            process=process,
            startup_seconds=seconds,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--data-dir", default=None, help="default: a temporary directory")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=None, help="default: a random one, printed")
    parser.add_argument("--token", default=None, help="legacy API token; default: random")
    parser.add_argument(
        "--check", action="store_true", help="exit once Label Studio answers (smoke test)"
    )
    args = parser.parse_args(argv)
    with running_label_studio(
        data_dir=args.data_dir,
        port=args.port,
        username=args.username,
        password=args.password,
        token=args.token,
    ) as server:
        print(
            f"Label Studio {LS_VERSION} at {server.url} (ready in {server.startup_seconds:.1f} s)"
        )
        print(f"  login: {server.username} / {server.password}")
        print(f"  API token (legacy, 'Authorization: Token ...'): {server.token}")
        print(f"  data: {server.data_dir}   log: {server.log_path}")
        if args.check:
            return 0
        print("Ctrl-C stops it.")
        with contextlib.suppress(KeyboardInterrupt):
            while server.process.poll() is None:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
