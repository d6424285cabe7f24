"""Fixtures for the end-to-end tests: ONE real Label Studio for the session, the real backend
server (``_wsgi.py``) beside it, and a small REST helper that plays the annotator.

Every test in this directory is marked ``integration`` (deselect with -m "not integration").
Label Studio must be installed (``make label-studio``); a missing install fails loudly
rather than skipping, so CI cannot pass without running these tests.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from scripts.label_studio import (
    BackendServer,
    LabelStudioServer,
    free_port,
    running_backend,
    running_label_studio,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(item.path).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def wait_for(
    condition: Callable[[], object], *, timeout_s: float, what: str, interval_s: float = 0.5
) -> object:
    """Poll ``condition()`` until it returns something truthy; return it, or fail the test
    saying what was awaited."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class LabelStudioAPI:
    """The REST calls the tests make, as the logged-in user (an admin who also annotates)."""

    server: LabelStudioServer
    session: requests.Session = field(default_factory=requests.Session)
    token: str | None = None  # another user's legacy token; None = the admin's

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"} if self.token else self.server.headers

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        reply = self.session.request(method, self.server.url + path, headers=self.headers, **kwargs)
        # Label Studio on SQLite answers 500 ("database is locked", in its log) when a request
        # waits more than SQLite's 5 s for the write lock, e.g. /next (it writes the stream
        # history) while the backend imports a round's predictions on a loaded 2-core machine.
        # A person reloads the page; a GET here is retried as they would (twice, 2 s apart).
        for _ in range(2):
            if method != "GET" or reply.status_code != 500:
                break
            time.sleep(2.0)
            reply = self.session.request(
                method, self.server.url + path, headers=self.headers, **kwargs
            )
        assert reply.status_code < 400, (
            f"{method} {path}: HTTP {reply.status_code}: {reply.text[:500]}"
        )
        return reply

    def project(self, project_id: int) -> dict:
        return self.call("GET", f"/api/projects/{project_id}/").json()

    def tasks(self, project_id: int) -> list[dict]:
        """Every task with its annotation count, paged as the Data Manager does."""
        tasks: list[dict] = []
        page = 1
        while True:
            reply = self.session.get(
                f"{self.server.url}/api/tasks",
                params={"project": project_id, "page": page, "page_size": 500, "fields": "all"},
                headers=self.headers,
                timeout=60,
            )
            if reply.status_code == 404:  # past the last page
                break
            assert reply.status_code == 200, reply.text[:300]
            body = reply.json()
            batch = body["tasks"] if isinstance(body, dict) else body
            tasks.extend(batch)
            if len(batch) < 500:
                break
            page += 1
        return tasks

    def predictions(self, project_id: int) -> list[dict]:
        return self.call("GET", "/api/predictions/", params={"project": project_id}).json()

    def model_versions(self, project_id: int) -> dict[str, int]:
        return self.call("GET", f"/api/projects/{project_id}/model-versions/").json()

    def next_task(self, project_id: int) -> dict:
        return self.call("GET", f"/api/projects/{project_id}/next").json()

    def annotate(self, task_id: int, from_name: str, to_name: str, choice: str) -> dict:
        """Submit a single-choice annotation, as the labeling UI does."""
        result = [
            {
                "from_name": from_name,
                "to_name": to_name,
                "type": "choices",
                "value": {"choices": [choice]},
            }
        ]
        return self.call(
            "POST", f"/api/tasks/{task_id}/annotations/", json={"result": result}
        ).json()

    def connect_backend(
        self, project_id: int, url: str, title: str = "AutoAL", extra_params: dict | None = None
    ) -> dict:
        payload: dict = {"project": project_id, "url": url, "title": title, "is_interactive": False}
        if extra_params is not None:
            payload["extra_params"] = extra_params
        return self.call("POST", "/api/ml", json=payload).json()

    def sign_up(self, email: str, password: str) -> LabelStudioAPI:
        """A new member of the organisation, signed up through Label Studio's own sign-up
        page (the invite link), with their own legacy token: another annotator."""
        invite = self.call("GET", "/api/invite").json()
        session = requests.Session()
        page = f"{self.server.url}/user/signup/?token={invite['token']}"
        session.get(page, timeout=60)
        reply = session.post(
            page,
            data={"email": email, "password": password,
                  "csrfmiddlewaretoken": session.cookies.get("csrftoken", "")},
            headers={"Referer": page},
            timeout=60,
        )  # fmt: skip
        assert reply.status_code < 400, reply.text[:300]
        token = session.get(f"{self.server.url}/api/current-user/token", timeout=60)
        assert token.status_code == 200, f"sign-up of {email} failed: {token.text[:300]}"
        member = LabelStudioAPI(self.server)
        member.token = token.json()["token"]
        return member


class BackendProcess:
    """The backend on a fixed port and model dir, so it can be stopped and started again
    (Label Studio keeps calling the URL it was given)."""

    def __init__(self, model_dir: Path, ls: LabelStudioServer, env: dict[str, str]) -> None:
        self.model_dir = model_dir
        self.port = free_port()
        self.ls = ls
        self.env = env
        self._stack = contextlib.ExitStack()
        self.server: BackendServer | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BackendServer:
        self.starts += 1
        self.server = self._stack.enter_context(
            running_backend(
                model_dir=self.model_dir,
                label_studio_url=self.ls.url,
                api_key=self.ls.token,
                port=self.port,
                extra_env=self.env,
                log_path=self.model_dir.parent / f"backend-{self.starts}.log",
            )
        )
        return self.server

    def stop(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self.server = None

    def restart(self) -> BackendServer:
        self.stop()
        return self.start()

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=kwargs.pop("timeout", 120), **kwargs)

    def history(self, project_id: int) -> list[dict]:
        reply = self.get(f"/projects/{project_id}/history")
        if reply.status_code == 404:
            return []
        assert reply.status_code == 200, reply.text[:300]
        body = reply.json()
        return body["rounds"] if isinstance(body, dict) else body

    def busy(self) -> bool:
        """True while a round runs or waits (the worker's gauges on /metrics)."""
        gauges = {}
        for line in self.get("/metrics").text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("autoal_queue_depth", "autoal_round_running"):
                gauges[name] = float(value)
        assert len(gauges) == 2, "the backend's /metrics lacks its worker gauges"
        return any(gauges.values())

    def log_tail(self, lines: int = 60) -> str:
        if self.server is None:
            return ""
        text = self.server.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Iterator[LabelStudioServer]:
    with running_label_studio(data_dir=tmp_path_factory.mktemp("label-studio")) as server:
        print(f"Label Studio up in {server.startup_seconds:.1f} s at {server.url}")
        yield server


@pytest.fixture(scope="session")
def ls_api(label_studio) -> LabelStudioAPI:
    return LabelStudioAPI(label_studio)


@pytest.fixture(scope="session")
def backend(label_studio, tmp_path_factory) -> Iterator[BackendProcess]:
    root = tmp_path_factory.mktemp("backend")
    process = BackendProcess(
        root / "model_dir",
        label_studio,
        # A small window keeps each round's prediction import quick; rounds start once 10
        # items are labeled (the default), so the tests label past it.
        env={
            "AUTOAL_STRATEGY": "autoal",
            "AUTOAL_SEED": "0",
            "DEVICE": "cpu",
            # The heads are tiny: one intra-op thread beats two, by 6x on a busy 2-core box
            # (500 Adam steps on [30, 384]: 2.3 s vs 14.7 s), and leaves a core to LS.
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "1"),
        },
    )
    process.start()
    print(f"backend up in {process.server.startup_seconds:.1f} s at {process.url}")
    try:
        yield process
    finally:
        process.stop()
