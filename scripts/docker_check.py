"""Run the built image against a real Label Studio and one active-learning round end to end.

Called by ``docker/check.sh`` (``make docker-check``) once the image is built. The two
services of ``docker/docker-compose.yml`` are started from that file's own settings, as far as
this machine's tools allow (docs/docker.md says where they do not):

* ``label-studio``: no registry is reachable, so not the ``heartexlabs/label-studio`` image but
  the same Label Studio version from its venv (``make label-studio``), started with the
  service's environment only (user, password and legacy token come from
  ``LABEL_STUDIO_USERNAME``/``_PASSWORD``/``_USER_TOKEN``, as in the image) and its data volume
  as a directory.
* ``autoal-backend``: the image built from the service's ``build`` section, its command run
  as the image runs it (the image's own Entrypoint + Cmd, user, working directory and
  environment) with ``buildah run --isolation chroot`` (``podman run`` is refused here), the
  service's environment and its model volume as a directory. That runs everything the image
  holds, but without the isolation a container engine adds (network namespace, cgroups).

Both share the host network, so the ports are free ones instead of 8080/9090, and the backend
reaches Label Studio at 127.0.0.1 instead of ``http://label-studio:8080``.

The rounds, one per kind of input, each through Label Studio's API as an annotator would:
a text project (100 BBC News leads, 5 topics, JSON tasks) and an image project (60 digits
uploaded as files, which the backend fetches from Label Studio), both with a ``<Choices>``
config and the backend connected as their ML backend. The tasks Label Studio serves are
annotated (20, then 12), the backend's round is awaited, and the predictions it wrote back
are checked: one per task, of the round's model version, with a score and a choice of the
config, right far more often than chance (so the offline encoder weights were loaded), and
Label Studio's queue serves the lowest score next.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from scripts.demo import BBC_TOPICS, load_bbc_news, text_label_config
from scripts.label_studio import (
    LS_VERSION,
    free_port,
    label_studio_env,
    label_studio_executable,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker" / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
LS_SERVICE = "label-studio"
BACKEND_SERVICE = "autoal-backend"
# The image's user (Dockerfile: USER 1001:1001) must own the directory mounted as its volume.
IMAGE_UID = 1001

PER_TOPIC = 20  # 100 text tasks
LABELS = 20  # above AUTOAL_MIN_LABELS (10): the round trains the model, not diversity only
ROUND_TIMEOUT_S = 600


class CheckFailed(RuntimeError):
    """A step of the check did not do what it should; the message says what and where."""


def log(message: str) -> None:
    print(f"[docker-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- The compose file ---------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}`` and ``$$``."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3)
        current = env.get(name)
        unset_or_empty = not current
        if operator in (":-", "-"):
            use_default = unset_or_empty if operator == ":-" else current is None
            return argument if use_default else str(current)
        if operator in (":?", "?"):
            missing = unset_or_empty if operator == ":?" else current is None
            if missing:
                raise CheckFailed(f"compose file: {name} is required: {argument}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def service_environment(service: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A service's ``environment`` (mapping or list form), interpolated."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, env.get(item, "")) for item in raw)
    return {str(k): interpolate(str(v if v is not None else ""), env) for k, v in raw.items()}


@dataclass
class ComposeServices:
    label_studio_env: dict[str, str]
    backend_env: dict[str, str]
    backend_image: str
    label_studio_image: str


def read_compose(path: Path, env: Mapping[str, str]) -> ComposeServices:
    """The two services' settings, checked against what this check builds and runs."""
    document = yaml.safe_load(path.read_text())
    services = document.get("services") or {}
    missing = {LS_SERVICE, BACKEND_SERVICE} - set(services)
    if missing:
        raise CheckFailed(f"{path}: services {sorted(missing)} missing; has {sorted(services)}")
    backend = services[BACKEND_SERVICE]
    build = backend.get("build") or {}
    context = (path.parent / build.get("context", ".")).resolve()
    dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
    if context != REPO_ROOT or dockerfile != DOCKERFILE:
        raise CheckFailed(
            f"{path}: {BACKEND_SERVICE} builds {dockerfile} in {context}; "
            f"expected {DOCKERFILE} in {REPO_ROOT}"
        )
    volumes = [str(v) for v in backend.get("volumes") or []]
    if not any(v.split(":")[1:2] == ["/data/models"] for v in volumes):
        raise CheckFailed(f"{path}: {BACKEND_SERVICE} mounts no volume at /data/models")
    return ComposeServices(
        label_studio_env=service_environment(services[LS_SERVICE], env),
        backend_env=service_environment(backend, env),
        backend_image=str(backend.get("image", "")),
        label_studio_image=str(services[LS_SERVICE].get("image", "")),
    )


# --- Processes ----------------------------------------------------------------------------


def stop_group(process: subprocess.Popen, grace_s: float = 30.0) -> int | None:
    """SIGTERM the process group, SIGKILL after ``grace_s``; the exit code (None if killed)."""
    if process.poll() is not None:
        return process.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)
        return None


def container_init(process: subprocess.Popen) -> int | None:
    """The pid of the container's first process (what a container engine's PID 1 is): the
    first descendant of ``buildah run`` that runs the image's command in its root directory
    (buildah run > buildah-chroot-runtime > buildah-chroot-exec > the command)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    queue = [process.pid]
    while queue:
        pid = queue.pop(0)
        with contextlib.suppress(OSError):
            chrooted = os.readlink(f"/proc/{pid}/root") != "/"
            # buildah-chroot-exec is chrooted too, but it is buildah's, not the image's.
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if chrooted and not argv0.startswith(b"buildah"):
                return pid
        queue.extend(sorted(children.get(pid, [])))
    return None


def stop_container(process: subprocess.Popen, grace_s: float = 10.0) -> tuple[int | None, str]:
    """As ``docker stop`` does: SIGTERM to the container's first process, SIGKILL after
    ``grace_s``. Signalling buildah instead would end the command at once (buildah's chroot
    runner kills its child when it dies), so no graceful stop would be seen. Returns the exit
    code of ``buildah run`` (None if it had to be killed) and how the stop went."""
    init = container_init(process)
    if init is None:
        return stop_group(process), "no container process found: buildah's group was signalled"
    name = Path(f"/proc/{init}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    with contextlib.suppress(ProcessLookupError):
        os.kill(init, signal.SIGTERM)
    try:
        code = process.wait(timeout=grace_s)
        return code, f"SIGTERM to the container's first process ({init}: {name[:60]})"
    except subprocess.TimeoutExpired:
        stop_group(process, grace_s=5.0)
        return None, f"{name[:60]} did not exit {grace_s:.0f} s after SIGTERM: killed"


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout_s: float,
    what: str,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
    interval_s: float = 1.0,
) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail fast if ``process`` dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise CheckFailed(
                f"{what}: the process exited with code {process.returncode}; "
                f"log {log_path}:\n{tail(log_path) if log_path else ''}"
            )
        with contextlib.suppress(requests.RequestException):
            result = condition()
            if result:
                return result
        time.sleep(interval_s)
    raise CheckFailed(
        f"timed out after {timeout_s:.0f} s waiting for {what}"
        + (f"; log {log_path}:\n{tail(log_path)}" if log_path else "")
    )


def run_quiet(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class LabelStudio:
    url: str
    token: str
    session: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        headers = {"Authorization": f"Token {self.token}"}
        for attempt in range(3):
            reply = self.session.request(method, self.url + path, headers=headers, **kwargs)
            # SQLite's "database is locked" (HTTP 500) while the backend imports predictions on
            # a busy 2-core machine: a GET is retried, as a person reloads the page.
            if method != "GET" or reply.status_code != 500 or attempt == 2:
                break
            time.sleep(2.0)
        if reply.status_code >= 400:
            raise CheckFailed(
                f"Label Studio {method} {path}: HTTP {reply.status_code}: {reply.text[:400]}"
            )
        return reply

    def project(self, project_id: int) -> dict:
        return self.call("GET", f"/api/projects/{project_id}/").json()

    def tasks(self, project_id: int) -> list[dict]:
        reply = self.call(
            "GET", "/api/tasks", params={"project": project_id, "page_size": 1000, "fields": "all"}
        ).json()
        return reply["tasks"] if isinstance(reply, dict) else reply

    def predictions(self, project_id: int) -> list[dict]:
        return self.call("GET", "/api/predictions/", params={"project": project_id}).json()


@contextlib.contextmanager
def label_studio_service(
    compose_env: Mapping[str, str], data_dir: Path, log_path: Path, timeout_s: float = 300
) -> Iterator[LabelStudio]:
    """``label-studio start`` with the compose service's environment; no user on the command
    line: the user and the legacy token must come from that environment, as in the image."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = label_studio_env(data_dir, {**compose_env, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir)})
    command = [
        str(label_studio_executable()), "start", "--no-browser",
        "--internal-host", "127.0.0.1", f"--port={port}",
    ]  # fmt: skip
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            command,
            cwd=data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        ls = LabelStudio(f"http://127.0.0.1:{port}", compose_env["LABEL_STUDIO_USER_TOKEN"])

        def whoami() -> dict | None:
            reply = ls.session.get(
                f"{ls.url}/api/current-user/whoami",
                headers={"Authorization": f"Token {ls.token}"},
                timeout=5,
            )
            return reply.json() if reply.status_code == 200 else None

        started = time.monotonic()
        user = wait_until(
            whoami,
            timeout_s=timeout_s,
            what="Label Studio to accept the compose file's legacy token",
            process=process,
            log_path=log_path,
        )
        expected_user = compose_env.get("LABEL_STUDIO_USERNAME")
        if user.get("email") != expected_user:
            raise CheckFailed(
                f"Label Studio's user is {user.get('email')!r}, expected {expected_user!r}"
            )
        log(f"Label Studio {LS_VERSION} up at {ls.url} in {time.monotonic() - started:.0f} s "
            f"as {expected_user}, token from LABEL_STUDIO_USER_TOKEN")  # fmt: skip
        yield ls
    finally:
        stop_group(process)


@dataclass
class ImageConfig:
    command: list[str]
    user: str
    workdir: str
    env: dict[str, str]
    healthcheck: list[str] | None


def image_config(image: str) -> ImageConfig:
    """What a container engine would run: Entrypoint + Cmd, as the image's user, in its
    working directory, with its environment (docker-format images keep the HEALTHCHECK)."""
    inspected = json.loads(run_quiet(["podman", "image", "inspect", image]))[0]
    config = inspected.get("Config") or {}
    command = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not command:
        raise CheckFailed(f"{image} has neither an Entrypoint nor a Cmd")
    health = inspected.get("Healthcheck") or config.get("Healthcheck") or {}
    test = health.get("Test") or []
    healthcheck = test[1:] if test and test[0] == "CMD" else None
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    return ImageConfig(
        command, config.get("User") or "", config.get("WorkingDir") or "/", env, healthcheck
    )


@dataclass
class Backend:
    url: str
    container: str
    process: subprocess.Popen
    log_path: Path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def history(self, project_id: int) -> list[dict]:
        reply = self.get(f"/projects/{project_id}/history")
        if reply.status_code == 404:
            return []
        reply.raise_for_status()
        body = reply.json()
        return body["rounds"] if isinstance(body, dict) else body

    def busy(self) -> bool:
        gauges = {}
        for line in self.get("/metrics").text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("autoal_queue_depth", "autoal_round_running"):
                gauges[name] = float(value)
        if len(gauges) != 2:
            raise CheckFailed("the backend's /metrics lacks its worker gauges")
        return any(gauges.values())


def buildah_run(
    container: str, command: list[str], env: Mapping[str, str], volumes: list[str]
) -> list[str]:
    return [
        "buildah", "run", "--isolation", "chroot", "--network", "host",
        *(arg for name, value in env.items() for arg in ("--env", f"{name}={value}")),
        *(arg for volume in volumes for arg in ("--volume", volume)),
        container, "--", *command,
    ]  # fmt: skip


@contextlib.contextmanager
def backend_service(
    image: str, compose_env: Mapping[str, str], model_dir: Path, log_path: Path, report: dict
) -> Iterator[Backend]:
    config = image_config(image)
    report["image_command"] = config.command
    report["image_user"] = config.user
    container = run_quiet(["buildah", "from", "--name", f"autoal-check-{os.getpid()}", image])
    model_dir.mkdir(parents=True, exist_ok=True)
    os.chown(model_dir, IMAGE_UID, IMAGE_UID)
    port = free_port()
    env = {**compose_env, "PORT": str(port)}
    volumes = [f"{model_dir}:/data/models"]
    # Who runs it and where: a container engine would use the image's USER and WORKDIR.
    identity = run_quiet(
        buildah_run(container, ["sh", "-c", "id -u; pwd; command -v python"], {}, [])
    )
    uid, workdir, python = identity.splitlines()
    if uid != config.user.split(":")[0] or workdir != config.workdir:
        raise CheckFailed(
            f"buildah run used uid {uid} in {workdir}; the image says {config.user} in {config.workdir}"
        )
    log(f"container {container[:12]}: uid {uid}, {workdir}, {python}; command {config.command}")
    command = buildah_run(container, config.command, env, volumes)
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    backend = Backend(f"http://127.0.0.1:{port}", container, process, log_path)
    try:
        started = time.monotonic()
        wait_until(
            lambda: backend.get("/health", timeout=2).status_code == 200,
            timeout_s=180,
            what="the backend's /health",
            process=process,
            log_path=log_path,
        )
        report["backend_start_s"] = round(time.monotonic() - started, 1)
        log(
            f"backend (the image's command) answers /health at {backend.url} in {report['backend_start_s']} s"
        )
        if config.healthcheck:
            # The image's HEALTHCHECK, run inside the same container as an engine would.
            run_quiet(buildah_run(container, config.healthcheck, {"PORT": str(port)}, []))
            report["healthcheck"] = "passed"
            log("the image's HEALTHCHECK command passes")
        else:
            report["healthcheck"] = "missing from the image"
        yield backend
    finally:
        started = time.monotonic()
        code, how = stop_container(process)
        report["sigterm_exit_code"] = code
        report["sigterm_stop_s"] = round(time.monotonic() - started, 1)
        log(f"backend stopped: {how}; exit {code} in {report['sigterm_stop_s']} s")
        subprocess.run(["buildah", "rm", container], capture_output=True)


# --- The rounds ---------------------------------------------------------------------------


@dataclass
class Project:
    id: int
    kind: str
    from_name: str
    to_name: str
    choices: tuple[str, ...]
    truth: dict[int, str]  # task id -> the right choice (the annotator's knowledge)
    labels: int  # how many to annotate before the round is checked
    min_accuracy: float  # on the unlabeled tasks after that round; well above chance


def connect(ls: LabelStudio, backend: Backend, project_id: int) -> None:
    ml = ls.call(
        "POST",
        "/api/ml",
        json={
            "project": project_id,
            "url": backend.url,
            "title": "AutoAL",
            "is_interactive": False,
        },
    ).json()
    # Label Studio calls the backend's /health before it adds it: CO = connected.
    if ml.get("state") != "CO":
        raise CheckFailed(f"Label Studio did not connect the backend at {backend.url}: {ml}")


def text_project(ls: LabelStudio, backend: Backend) -> Project:
    """100 BBC News leads, 5 topics, as JSON tasks: the text encoder (MiniLM) runs."""
    items = load_bbc_news(per_topic=PER_TOPIC, seed=3, lead_only=True)
    project_id = ls.call(
        "POST",
        "/api/projects",
        json={"title": "docker-check: BBC topics", "label_config": text_label_config()},
    ).json()["id"]
    ls.call("POST", f"/api/projects/{project_id}/import", json=[{"text": i.text} for i in items])
    connect(ls, backend, project_id)
    by_text = {i.text: i.label for i in items}
    truth = {t["id"]: by_text[t["data"]["text"]] for t in ls.tasks(project_id)}
    # Five topics: chance is .2.
    return Project(project_id, "text", "topic", "text", BBC_TOPICS, truth, LABELS, 0.45)


def digit_png(image: Any) -> bytes:
    """An 8x8 scikit-learn digit (0..16) as a 32x32 grayscale PNG."""
    import numpy as np
    from PIL import Image

    pixels = (np.asarray(image) / 16.0 * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").resize((32, 32), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


def image_project(ls: LabelStudio, backend: Backend) -> Project:
    """60 digits (0, 1, 7) uploaded to Label Studio as files: the backend fetches them from
    Label Studio with its key and the image encoder (MobileNetV2, weights copied from the
    offline package into TORCH_HOME as the image's user) runs."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    choices = ("0", "1", "7")
    rng = np.random.default_rng(0)
    rows = np.concatenate(
        [rng.choice(np.flatnonzero(digits.target == int(c)), 20, replace=False) for c in choices]
    )
    config = (
        '<View><Image name="image" value="$image"/><Choices name="digit" toName="image">'
        + "".join(f'<Choice value="{c}"/>' for c in choices)
        + "</Choices></View>"
    )
    project_id = ls.call(
        "POST", "/api/projects", json={"title": "docker-check: digits", "label_config": config}
    ).json()["id"]
    # One multipart field per file: Label Studio reads request.FILES by field name.
    files = {
        f"file{row}": (f"digit-{row}.png", digit_png(digits.images[row]), "image/png")
        for row in rows
    }
    ls.call("POST", f"/api/projects/{project_id}/import", files=files)
    connect(ls, backend, project_id)
    # An upload is served as /data/upload/<project>/<random>-digit-<row>.png
    truth = {
        t["id"]: str(digits.target[int(t["data"]["image"].rsplit("digit-", 1)[1][:-4])])
        for t in ls.tasks(project_id)
    }
    # Three digits: chance is .33.
    return Project(project_id, "image", "digit", "image", choices, truth, 12, 0.6)


def label_and_check(ls: LabelStudio, backend: Backend, project: Project) -> dict:
    """Annotate the tasks Label Studio serves, await the backend's round and check what it
    wrote back; the figures for the report."""
    log(f"{project.kind} project {project.id}: {len(project.truth)} tasks, backend connected")
    served: list[int] = []
    for _ in range(project.labels):
        task = ls.call("GET", f"/api/projects/{project.id}/next").json()
        if task["id"] in served:
            raise CheckFailed(f"the queue served task {task['id']} again")
        result = [{"from_name": project.from_name, "to_name": project.to_name, "type": "choices",
                   "value": {"choices": [project.truth[task["id"]]]}}]  # fmt: skip
        ls.call("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": result})
        served.append(task["id"])
    log(f"{project.labels} tasks annotated in the order Label Studio served them")

    started = time.monotonic()

    def settled() -> dict | None:
        rounds = backend.history(project.id)
        if not rounds or rounds[-1]["labeled"] < project.labels:
            return None
        if ls.project(project.id)["model_version"] != rounds[-1]["model_version"]:
            return None
        return None if backend.busy() else rounds[-1]

    entry = wait_until(
        settled,
        timeout_s=ROUND_TIMEOUT_S,
        what=f"a round with {project.labels} labels written back to Label Studio",
        process=backend.process,
        log_path=backend.log_path,
        interval_s=2.0,
    )
    waited = time.monotonic() - started
    if entry.get("cold_start"):
        raise CheckFailed(f"the round with {project.labels} labels is still a cold start: {entry}")
    if entry.get("skipped"):
        raise CheckFailed(f"{entry['skipped']} tasks could not be read by the backend: {entry}")
    version = entry["model_version"]
    current = [p for p in ls.predictions(project.id) if p["model_version"] == version]
    unlabeled = set(project.truth) - set(served)
    on_unlabeled = [p for p in current if p["task"] in unlabeled]
    if not on_unlabeled:
        raise CheckFailed(f"no prediction of {version} on an unlabeled task")
    for prediction in current:
        if not isinstance(prediction.get("score"), int | float):
            raise CheckFailed(f"prediction {prediction['id']} has no score: {prediction}")
        choice = prediction["result"][0]["value"]["choices"][0]
        if choice not in project.choices:
            raise CheckFailed(f"prediction {prediction['id']} chose {choice!r}, not a choice")
    per_task = [p["task"] for p in current]
    if len(per_task) != len(set(per_task)):
        raise CheckFailed("a task holds two predictions of the same model version")

    def chosen(prediction: dict) -> str:
        return prediction["result"][0]["value"]["choices"][0]

    right = sum(chosen(p) == project.truth[p["task"]] for p in on_unlabeled)
    accuracy = right / len(on_unlabeled)
    # Far above chance: the encoder's offline weights were loaded, not random ones.
    if accuracy < project.min_accuracy:
        raise CheckFailed(
            f"predictions right on {accuracy:.0%} of unlabeled {project.kind} tasks, "
            f"expected at least {project.min_accuracy:.0%}: is the encoder loaded?"
        )
    lowest = min(on_unlabeled, key=lambda p: (p["score"], p["task"]))
    next_task = ls.call("GET", f"/api/projects/{project.id}/next").json()
    if next_task["id"] != lowest["task"]:
        raise CheckFailed(
            f"Label Studio serves task {next_task['id']}; the lowest score is task {lowest['task']}"
        )
    sampling = ls.project(project.id).get("sampling")
    if sampling != "Uncertainty sampling":
        raise CheckFailed(f"project sampling is {sampling!r}, not uncertainty sampling")
    # The project page and its JSON, as an annotation lead opens them.
    page = backend.get(f"/projects/{project.id}", headers={"Accept": "text/html"})
    overview = backend.get(f"/api/projects/{project.id}")
    if page.status_code != 200 or overview.status_code != 200:
        raise CheckFailed(f"project page HTTP {page.status_code}, JSON HTTP {overview.status_code}")
    scores = sorted(p["score"] for p in current)
    log(
        f"round {entry['round']} ({version}) after {waited:.0f} s: {len(current)} predictions "
        f"written back with scores {scores[0]:.3f}..{scores[-1]:.3f}; right on {accuracy:.0%} "
        f"of the {len(on_unlabeled)} unlabeled tasks; /next serves the lowest score"
    )
    return {
        "project_id": project.id,
        "tasks": len(project.truth),
        "labeled": project.labels,
        "round": entry["round"],
        "model_version": version,
        "round_wait_s": round(waited, 1),
        "predictions_written": len(current),
        "score_range": [round(scores[0], 4), round(scores[-1], 4)],
        "accuracy_on_unlabeled": round(accuracy, 3),
        "next_task_is_lowest_score": True,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--image", required=True, help="the built image, e.g. localhost/autoal-backend:check"
    )
    parser.add_argument("--report", type=Path, default=None, help="write the result as JSON here")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="autoal-docker-check-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    # The variables the compose file requires, as a user exports them (docker/README.md).
    env = dict(os.environ)
    env.setdefault("LABEL_STUDIO_PASSWORD", secrets.token_urlsafe(12))
    env.setdefault("LABEL_STUDIO_API_KEY", secrets.token_hex(20))
    compose = read_compose(COMPOSE_FILE, env)
    # Host networking instead of the compose network: Label Studio is at 127.0.0.1.
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "image": args.image,
        "compose_images": {
            LS_SERVICE: compose.label_studio_image,
            BACKEND_SERVICE: compose.backend_image,
        },
        "workdir": str(workdir),
        "passed": False,
    }
    started = time.monotonic()
    try:
        with label_studio_service(
            compose.label_studio_env, workdir / "label-studio-data", workdir / "label-studio.log"
        ) as ls:
            backend_env = {**compose.backend_env, "LABEL_STUDIO_URL": ls.url}
            with backend_service(
                args.image, backend_env, workdir / "autoal-models", workdir / "backend.log", report
            ) as backend:
                for make_project in (text_project, image_project):
                    project = make_project(ls, backend)
                    report[project.kind] = label_and_check(ls, backend, project)
        if report.get("sigterm_exit_code") != 0:
            raise CheckFailed(
                f"the backend did not stop cleanly on SIGTERM: {report['sigterm_exit_code']}"
            )
        report["passed"] = True
    except CheckFailed as exc:
        report["error"] = str(exc)
        log(f"FAILED: {exc}")
    report["run_s"] = round(time.monotonic() - started, 1)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    if report["passed"]:
        log(f"PASSED in {report['run_s']:.0f} s")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"logs kept in {workdir}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
