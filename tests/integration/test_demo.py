"""Smoke test of ``make demo``: the script starts Label Studio and the backend, makes the demo
project once and reuses it on a rerun (``--check`` exits as soon as the project is ready, with
its tasks imported and the backend connected, which Label Studio checks through ``/setup``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from scripts.label_studio import REPO_ROOT, free_port


def run_demo(data_dir, port: int, backend_port: int, *options: str) -> str:
    completed = subprocess.run(
        [
            sys.executable, "-m", "scripts.demo", "--check",
            "--data-dir", str(data_dir), "--port", str(port),
            "--backend-port", str(backend_port), *(options or ("--tasks", "50")),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def test_demo_creates_its_project_once_and_reuses_it(tmp_path):
    port, backend_port = free_port(), free_port()
    first = run_demo(tmp_path, port, backend_port)
    created = re.search(r"Project (\d+) created", first)
    assert created, first
    assert f"http://127.0.0.1:{port}/projects/{created.group(1)}/data" in first
    creds = json.loads((tmp_path / "credentials.json").read_text())
    assert creds["username"] == "demo@autoal.local"
    assert f"{creds['username']} / {creds['password']}" in first

    # A rerun with another backend port: same project, same login, backend URL updated.
    second = run_demo(tmp_path, port, free_port())
    assert re.search(rf"Project {created.group(1)} reused", second), second
    assert json.loads((tmp_path / "credentials.json").read_text()) == creds


def test_demo_makes_a_box_project_and_a_span_project(tmp_path):
    port = free_port()
    boxes = run_demo(tmp_path, port, free_port(), "--kind", "boxes", "--tasks", "12")
    box_project = re.search(r"Project (\d+) created: AutoAL demo: shapes to box", boxes)
    assert box_project, boxes
    assert "label 20 images:\ndraw a box around every shape" in boxes

    spans = run_demo(tmp_path, port, free_port(), "--kind", "spans", "--tasks", "20")
    span_project = re.search(r"Project (\d+) created: AutoAL demo: entities in tweets", spans)
    assert span_project, spans
    assert span_project.group(1) != box_project.group(1)
    assert "label 20 tweets:\nmark every named entity" in spans
