"""Queue latency: from an annotation submitted in Label Studio to ``/next`` serving the new order.

    python -m benchmarks.queue_latency --tasks 10000 --annotations 5

Starts a real Label Studio and the real backend (``scripts.label_studio``), creates a text
project of ``--tasks`` distinct texts (Rotten Tomatoes snippets when the offline package is
installed, fresh/rotten; synthetic sentences otherwise), connects the backend and lets it
embed every task once (the cold-start round). Then an annotator labels ``--warmup-labels``
tasks as served, so the rounds train a model. Each measured annotation then goes like this,
starting from a settled backend (no round running or queued, as when an annotator takes more
than a few seconds per task):

1. ``GET /api/projects/{id}/next`` gives the task to label; the annotation is POSTed (t0).
2. The project is polled until its ``model_version`` is a new one: the backend has imported
   the new round's predictions and pointed the project at them.
3. ``/next`` is asked again (t1); the task it serves must carry a prediction of that new
   version (checked), i.e. the queue is served from the new ranking.

The latency is t1 - t0 (polling every ``--poll`` seconds adds at most that much). The backend's
own round history gives where the time went (sync = the new tasks and the changed annotations
read from Label Studio, embed, train, select, push = prediction import + project update, then
off the annotators' path: validate, estimate, delete = the replaced version's predictions).
The last line printed is ``{"tasks": N, "median_seconds": s, ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import requests

from scripts.label_studio import running_backend, running_label_studio

LABELS = ("fresh", "rotten")
LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="fresh"/>
    <Choice value="rotten"/>
  </Choices>
</View>"""
IMPORT_CHUNK = 2000


def load_texts(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` distinct (text, label) pairs: Rotten Tomatoes snippets, synthetic if too few."""
    import numpy as np

    from benchmarks.datasets import rotten_tomatoes_rows

    try:
        pairs = rotten_tomatoes_rows(distinct=True)
    except FileNotFoundError:
        pairs = []
    rng = np.random.default_rng(seed)
    rng.shuffle(pairs)
    words = {
        "fresh": ["brilliant", "warm", "funny", "charming", "sharp", "moving", "clever"],
        "rotten": ["dull", "clumsy", "tedious", "flat", "muddled", "cold", "lifeless"],
    }
    filler = ["the", "film", "story", "plot", "cast", "scene", "director", "script", "music"]
    while len(pairs) < n:
        label = LABELS[len(pairs) % 2]
        body = list(rng.choice(filler, 12)) + list(rng.choice(words[label], 3))
        rng.shuffle(body)
        pairs.append((f"#{len(pairs)} " + " ".join(body), label))
    return pairs[:n]


class LabelStudioREST:
    """The few calls an annotator's UI makes, with the legacy token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 600)
        reply = self.session.request(method, self.url + path, **kwargs)
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {reply.status_code}: {reply.text[:300]}")
        return reply

    def model_version(self, project_id: int) -> str:
        return str(self.call("GET", f"/api/projects/{project_id}/").json().get("model_version"))

    def next_task(self, project_id: int) -> dict:
        return self.call("GET", f"/api/projects/{project_id}/next").json()

    def annotate(self, task_id: int, choice: str) -> None:
        result = [
            {
                "from_name": "sentiment",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [choice]},
            }
        ]
        self.call("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result})

    def prediction_versions(self, task_id: int) -> set[str]:
        reply = self.call("GET", "/api/predictions/", params={"task": task_id}).json()
        return {str(p.get("model_version")) for p in reply}


T = TypeVar("T")


def version_changed(ls: Any, project_id: int, before: str) -> bool:
    """True once the project points at another model version than ``before``."""
    return ls.model_version(project_id) != before


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, poll_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class BackendView:
    """The backend's history and worker gauges, over its HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def history(self, project_id: int) -> list[dict]:
        reply = requests.get(f"{self.url}/projects/{project_id}/history", timeout=30)
        if reply.status_code == 404:
            return []
        reply.raise_for_status()
        body = reply.json()
        return body["rounds"] if isinstance(body, dict) else body

    def busy(self) -> bool:
        gauges = {}
        for line in requests.get(f"{self.url}/metrics", timeout=30).text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("autoal_queue_depth", "autoal_round_running"):
                gauges[name] = float(value)
        return any(gauges.values())


def settled(ls: LabelStudioREST, backend: BackendView, project_id: int, labeled: int):
    """The newest round if it saw at least ``labeled`` labels, LS points at its version and
    the backend has nothing running or queued; else None."""

    def check():
        rounds = backend.history(project_id)
        if not rounds or rounds[-1]["labeled"] < labeled or backend.busy():
            return None
        if ls.model_version(project_id) != rounds[-1]["model_version"]:
            return None
        return rounds[-1]

    return check


def measure_label_studio_calls(url: str, token: str, project_id: int, repeats: int) -> dict:
    """Median seconds of each Label Studio call a round makes, through the backend's own
    client, on the benchmark's project (run after the latency measurement: it imports and
    deletes probe predictions and points the project at them for a moment)."""
    from autoal_backend.ls_client import ROUND_PROJECT_FIELDS, TASK_PAGE, LabelStudioClient

    client = LabelStudioClient(url, token)
    original = client.get_project(project_id)["model_version"]
    tasks = client.list_task_data(project_id, TASK_PAGE)
    known = {t["id"]: t.get("data") or {} for t in tasks}
    ids = sorted(known)
    annotated = [t["id"] for t in client.export_annotated(project_id)]
    result = [
        {
            "from_name": "sentiment",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": [LABELS[0]]},
        }
    ]
    calls: dict[str, Callable[[int], object]] = {
        "read the project, all counts": lambda _: client.get_project(project_id),
        "read the project, the round's fields": lambda _: client.get_project(
            project_id, ROUND_PROJECT_FIELDS
        ),
        "list every task (paged)": lambda _: client.list_task_data(project_id, TASK_PAGE),
        "count tasks": lambda _: client.count_tasks(project_id),
        "export annotated tasks": lambda _: client.export_annotated(project_id),
        "export one annotated task by id": lambda _: client.export_annotated(
            project_id, annotated[-1:]
        ),
        "sync, full": lambda _: client.sync_tasks(project_id),
        # Before 2026-12-05: new tasks, a count, then every annotated task exported.
        "sync, incremental (old)": lambda _: client.sync_tasks(project_id, known=known),
        # A round's sync now: this listing, then the export of the tasks whose stamp changed.
        "list new + annotated tasks (stamps)": lambda _: client.list_new_and_annotated(
            project_id, max(known)
        ),
    }

    def import_probe(r: int, size: int) -> object:
        predictions = [{"task": i, "result": result, "score": 0.5, "model_version": f"probe-{size}-{r}"}
                       for i in ids[:size]]  # fmt: skip
        return client.import_predictions(project_id, predictions)

    def delete_probe(r: int, size: int) -> object:
        return client.delete_model_version(project_id, f"probe-{size}-{r}")

    for size in (100, 1000):
        calls[f"import {size} predictions"] = partial(import_probe, size=size)
    calls["PATCH model_version"] = lambda r: client.update_project(
        project_id, model_version=f"probe-100-{r}"
    )
    calls["GET /next"] = lambda _: client.request("GET", f"/api/projects/{project_id}/next")
    # Not timed: the project points back at the round's version before its probe is deleted.
    calls["(restore)"] = lambda _: client.update_project(project_id, model_version=original)
    for size in (100, 1000):
        calls[f"delete {size} predictions (one version)"] = partial(delete_probe, size=size)
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call(r)
            seconds[name].append(time.perf_counter() - start)
    return {
        name: round(statistics.median(values), 3)
        for name, values in seconds.items()
        if not name.startswith("(")
    }


def run(args: argparse.Namespace) -> dict:
    pairs = load_texts(args.tasks, args.seed)
    truth_by_text = dict(pairs)
    env = {
        "AUTOAL_STRATEGY": args.strategy,
        "AUTOAL_SEED": str(args.seed),
        "DEVICE": args.device,
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    timings: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="autoal-latency-") as root,
        running_label_studio(data_dir=Path(root) / "label-studio") as server,
        running_backend(
            model_dir=Path(root) / "models",
            label_studio_url=server.url,
            api_key=server.token,
            extra_env=env,
        ) as backend_server,
    ):
        print(
            f"Label Studio at {server.url} ({server.startup_seconds:.0f} s), backend at "
            f"{backend_server.url}",
            flush=True,
        )
        ls = LabelStudioREST(server.url, server.token)
        backend = BackendView(backend_server.url)
        project = ls.call(
            "POST",
            "/api/projects",
            json={"title": "AutoAL queue latency", "label_config": LABEL_CONFIG},
        )
        project_id = int(project.json()["id"])
        start = time.perf_counter()
        tasks = [{"text": text} for text, _ in pairs]
        for first in range(0, len(tasks), IMPORT_CHUNK):
            ls.call(
                "POST",
                f"/api/projects/{project_id}/import",
                json=tasks[first : first + IMPORT_CHUNK],
            )
        # Label Studio may finish an import in the background: wait until every task exists.
        wait_for(
            lambda: (
                ls.call("GET", f"/api/projects/{project_id}/").json().get("task_number")
                == len(tasks)
            ),
            args.timeout,
            "the imported tasks",
            0.5,
        )
        timings["import_tasks_s"] = time.perf_counter() - start
        print(f"imported {len(tasks)} tasks in {timings['import_tasks_s']:.1f} s", flush=True)

        start = time.perf_counter()
        ls.call(
            "POST",
            "/api/ml",
            json={
                "project": project_id,
                "url": backend_server.url,
                "title": "AutoAL",
                "is_interactive": False,
            },
        )
        cold = wait_for(
            settled(ls, backend, project_id, 0), args.timeout, "the cold-start round", 1.0
        )
        timings["cold_start_round_s"] = time.perf_counter() - start
        print(
            f"cold-start round (embeds every task) settled in "
            f"{timings['cold_start_round_s']:.1f} s: {cold['seconds']}",
            flush=True,
        )

        def label_next() -> tuple[int, float]:
            task = ls.next_task(project_id)
            choice = truth_by_text[task["data"]["text"]]
            submitted = time.perf_counter()
            ls.annotate(task["id"], choice)
            return task["id"], submitted

        labeled = 0
        for _ in range(args.warmup_labels):
            label_next()
            labeled += 1
        wait_for(
            settled(ls, backend, project_id, labeled), args.timeout, "the first trained round", 1.0
        )
        print(f"{labeled} labels: trained rounds running", flush=True)

        latencies: list[float] = []
        rounds: list[dict] = []
        for _ in range(args.annotations):
            before = ls.model_version(project_id)
            _, submitted = label_next()
            labeled += 1
            wait_for(partial(version_changed, ls, project_id, before), args.timeout,
                     "a new model_version", args.poll)  # fmt: skip
            served = ls.next_task(project_id)
            served_at = time.perf_counter()
            version = ls.model_version(project_id)
            if version not in ls.prediction_versions(served["id"]):
                raise RuntimeError(
                    f"/next served task {served['id']} without a prediction of {version}"
                )
            latencies.append(served_at - submitted)
            entry = wait_for(
                settled(ls, backend, project_id, labeled), args.timeout, "the round to settle", 0.5
            )
            rounds.append(entry)
            print(
                f"annotation {len(latencies)}: queue served from {version} after "
                f"{latencies[-1]:.2f} s; backend round {entry['seconds']}",
                flush=True,
            )
        label_studio_costs = (
            measure_label_studio_calls(server.url, server.token, project_id, args.repeats)
            if args.repeats > 0
            else {}
        )
    stage_names = sorted({k for r in rounds for k in r["seconds"]})
    return {
        "tasks": args.tasks,
        "median_seconds": round(statistics.median(latencies), 3),
        "latencies": [round(x, 3) for x in latencies],
        "round_stage_medians": {
            k: round(statistics.median(r["seconds"].get(k, 0.0) for r in rounds), 3)
            for k in stage_names
        },
        "setup": {k: round(v, 2) for k, v in timings.items()},
        "label_studio_calls": label_studio_costs,
        "labeled_at_end": labeled,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--annotations", type=int, default=5, help="measured annotations")
    parser.add_argument(
        "--warmup-labels",
        type=int,
        default=12,
        help="labels given before measuring (the backend trains from 10)",
    )
    parser.add_argument("--strategy", default="autoal")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads", type=int, default=0, help="OMP/MKL threads of the backend (0: inherit)"
    )
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=900.0, help="per wait, seconds")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repeats of the per-call Label Studio timings (0: skip them)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.tasks < args.warmup_labels + args.annotations + 2:
        raise SystemExit("--tasks must exceed the labels given")
    report = run(args)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
