"""Chaos: crash, outage, slow-Label-Studio and storm scenarios against a real Label Studio.

    python -m benchmarks.chaos --tasks 300

Starts a real Label Studio 1.23.2 and the real backend (``scripts.label_studio``), a text
project of ``--tasks`` Rotten Tomatoes snippets connected to the backend, labels a few tasks as
an annotator would, then:

- **crash**: ``kill -9`` of the backend while a round runs, and again while it pushes (right
  after ``project.json`` records the version being imported); each time it is started again
  and nothing else happens (no annotation, no webhook). Measured: seconds until the owed round
  has run, and whether at most the project's live version holds our predictions.
- **outage**: an annotation, then Label Studio is stopped for ``--outage`` seconds. Measured:
  warning lines and tracebacks in the backend's log, ``/health`` during the outage, rounds
  attempted, and seconds from Label Studio's return until the owed round has run (no new
  annotation).
- **slow**: a second backend reaches Label Studio through a proxy that holds every call
  ``--delay`` seconds. Measured: the round's duration, and ``/webhook``, ``/predict`` and
  ``/health`` latencies while it runs.
- **storm**: ``--storm`` webhooks (duplicates, out of order, bogus projects) from 8 threads.
  Measured: ``/webhook`` latencies, rounds run and skipped, the backend's memory.

The last line printed is the JSON summary (docs/reliability.md records a run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from benchmarks.queue_latency import (
    LABEL_CONFIG,
    BackendView,
    LabelStudioREST,
    load_texts,
    settled,
    wait_for,
)
from scripts.label_studio import free_port, running_backend, running_label_studio


class Project:
    """The benchmark's project in Label Studio, labeled as an annotator would."""

    def __init__(self, ls: LabelStudioREST, tasks: int, seed: int, title: str) -> None:
        pairs = load_texts(tasks, seed)
        self.truth = dict(pairs)
        self.ls = ls
        reply = ls.call(
            "POST", "/api/projects", json={"title": title, "label_config": LABEL_CONFIG}
        )
        self.id = int(reply.json()["id"])
        ls.call("POST", f"/api/projects/{self.id}/import", json=[{"text": t} for t, _ in pairs])
        wait_for(lambda: ls.call("GET", f"/api/projects/{self.id}/").json().get("task_number") == tasks,
                 300, "the imported tasks", 0.5)  # fmt: skip
        self.labeled = 0

    def connect(self, backend_url: str) -> None:
        self.ls.call("POST", "/api/ml", json={"project": self.id, "url": backend_url,
                                              "title": "AutoAL", "is_interactive": False})  # fmt: skip

    def label(self, count: int = 1) -> None:
        for _ in range(count):
            task = self.ls.next_task(self.id)
            self.ls.annotate(task["id"], self.truth[task["data"]["text"]])
            self.labeled += 1

    def our_versions(self) -> dict[str, int]:
        versions = self.ls.call("GET", f"/api/projects/{self.id}/model-versions/").json()
        return {v: n for v, n in versions.items() if v.startswith(f"autoal-{self.id}-r")}


def gauges(url: str) -> dict[str, float]:
    out = {}
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        if name and not name.startswith("#"):
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def kill_hard(server) -> None:
    """kill -9 the backend's whole process group: nothing gets to clean up."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def crash(args, ls, backend_args, project: Project) -> dict:
    """kill -9 during a round and during a push; the restart catches up with no webhook."""
    results = {}
    for moment in ("round", "push"):
        with running_backend(**backend_args) as server:
            view = BackendView(server.url)
            wait_for(
                settled(ls, view, project.id, project.labeled),
                args.timeout,
                "a settled backend",
                0.5,
            )
            project.label(3)
            if moment == "round":
                wait_for(partial(round_running, server.url), 120, "a round to start", 0.05)
            else:
                state = backend_args["model_dir"] / str(project.id) / "project.json"
                wait_for(partial(pushing, state), 300, "a push", 0.01)
            kill_hard(server)
        killed_at = time.perf_counter()
        with running_backend(**backend_args) as server:
            view = BackendView(server.url)
            entry = wait_for(settled(ls, view, project.id, project.labeled), args.timeout,
                             "the owed round after the restart", 0.5)  # fmt: skip
            caught_up = time.perf_counter() - killed_at
            versions = project.our_versions()
            live = ls.model_version(project.id)
        results[f"kill_during_{moment}"] = {
            "caught_up_s": round(caught_up, 1),
            "round_labels": entry["labeled"],
            "our_versions_left": versions,
            "only_the_live_version": set(versions) <= {live},
        }
        print(f"crash during the {moment}: caught up in {caught_up:.1f} s, versions {versions}, live {live}",
              flush=True)  # fmt: skip
    return results


def outage(args, ls, ls_args, backend_args, project: Project) -> tuple[dict, contextlib.ExitStack]:
    """An annotation the backend does not hear about, then Label Studio stopped for
    ``--outage`` seconds while webhooks keep arriving, then Label Studio back."""
    log_path = backend_args["model_dir"].parent / "backend-outage.log"
    with running_backend(**backend_args, log_path=log_path) as server:
        view = BackendView(server.url)
        wait_for(
            settled(ls, view, project.id, project.labeled), args.timeout, "a settled backend", 0.5
        )
        rounds_before = len(view.history(project.id))
        # The backend is paused while the annotator labels: Label Studio's webhook times out
        # (as during a network split), so only the reconciliation or a later event can tell.
        os.killpg(server.process.pid, signal.SIGSTOP)
        project.label(1)
        ls_args.pop("stack").close()  # Label Studio stops
        os.killpg(server.process.pid, signal.SIGCONT)
        mark = len(log_path.read_text(errors="replace"))
        down_at = time.perf_counter()
        health = []
        while time.perf_counter() - down_at < args.outage:
            # Events keep arriving (duplicates, retries): they must not burn rounds or flood logs.
            requests.post(f"{server.url}/webhook", json={"action": "ANNOTATION_CREATED",
                                                          "project": {"id": project.id}}, timeout=5)  # fmt: skip
            health.append(requests.get(f"{server.url}/health", timeout=5).json())
            time.sleep(1.0)
        log_during = log_path.read_text(errors="replace")[mark:]
        stack = contextlib.ExitStack()
        stack.enter_context(running_label_studio(**ls_args))
        back_at = time.perf_counter()
        entry = wait_for(settled(ls, view, project.id, project.labeled), args.timeout,
                         "the owed round after the outage", 0.5)  # fmt: skip
        recovered = time.perf_counter() - back_at
        rounds_after = len(view.history(project.id))
        after_log = log_path.read_text(errors="replace")[mark:]
    warnings = re.findall(r" WARNING .*", after_log)
    report = {
        "outage_s": args.outage,
        "warning_lines_during": len(re.findall(r" WARNING .*", log_during)),
        "warnings": [w.strip()[:200] for w in warnings],
        "tracebacks": after_log.count("Traceback"),
        "health_during": sorted({h.get("status") for h in health}),
        "health_reason": next((h.get("reason") for h in health if h.get("reason")), None),
        "recovered_s": round(recovered, 1),
        "rounds_run": rounds_after - rounds_before,
        "round_labels": entry["labeled"],
    }
    print(f"outage: {report}", flush=True)
    return report, stack


class SlowProxy:
    """An HTTP proxy to ``target`` that holds every request ``delay`` seconds."""

    def __init__(self, target: str, delay: float) -> None:
        owner = self
        self.target, self.delay = target, delay
        self.calls = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _forward(self):
                owner.calls += 1
                time.sleep(owner.delay)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                reply = requests.request(self.command, owner.target + self.path, headers=headers,
                                         data=body, timeout=300, allow_redirects=False)  # fmt: skip
                self.send_response(reply.status_code)
                for k, v in reply.headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "content-encoding",
                        "connection",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def slow(args, ls, ls_url, token, root: Path, env: dict) -> dict:
    """A second backend behind a proxy that delays every Label Studio call."""
    proxy = SlowProxy(ls_url, args.delay)
    project = Project(ls, args.tasks, args.seed + 1, "AutoAL chaos: slow Label Studio")
    try:
        with running_backend(model_dir=root / "slow-models", label_studio_url=proxy.url, api_key=token,
                             extra_env=env, timeout_s=300) as server:  # fmt: skip
            view = BackendView(server.url)
            project.connect(server.url)
            project.label(12)
            wait_for(
                lambda: gauges(server.url).get("autoal_round_running") == 1,
                args.timeout,
                "a round",
                0.1,
            )
            started = time.perf_counter()
            latency: dict[str, list[float]] = {"webhook": [], "predict": [], "health": []}

            def trained() -> dict | None:
                return next(
                    (e for e in view.history(project.id) if e.get("labeled", 0) >= 12), None
                )

            # Until the round on the 12 labels is done (the webhooks sent meanwhile owe one more
            # round, which the backend skips: nothing changed).
            while trained() is None:
                latency["webhook"].append(timed(lambda: requests.post(
                    f"{server.url}/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": project.id}},
                    timeout=10)))  # fmt: skip
                latency["predict"].append(
                    timed(
                        lambda: requests.post(
                            f"{server.url}/predict",
                            json={"project": project.id, "tasks": [{"id": 1}]},
                            timeout=10,
                        )
                    )
                )
                latency["health"].append(
                    timed(lambda: requests.get(f"{server.url}/health", timeout=10))
                )
                time.sleep(0.5)
            entry = trained()
            round_s = time.perf_counter() - started
    finally:
        proxy.close()
    report = {
        "delay_per_call_s": args.delay,
        "label_studio_calls": proxy.calls,
        "round_s": round(round_s, 1),
        "round_stages_s": entry["seconds"] if entry else None,
        **{f"{route}_max_s": round(max(v), 3) for route, v in latency.items() if v},
        **{
            f"{route}_median_s": round(statistics.median(v), 3) for route, v in latency.items() if v
        },
    }
    print(f"slow Label Studio: {report}", flush=True)
    return report


def storm(args, ls, backend_args, project: Project) -> dict:
    """Duplicated, out-of-order and bogus webhooks at once."""
    with running_backend(**backend_args) as server:
        view = BackendView(server.url)
        wait_for(
            settled(ls, view, project.id, project.labeled), args.timeout, "a settled backend", 0.5
        )
        before = {"rounds": len(view.history(project.id)), "rss_mb": rss_mb(server.process.pid)}
        actions = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "PROJECT_UPDATED",
                   "TASKS_CREATED", "ANNOTATION_CREATED"]  # fmt: skip
        payloads = []
        for i in range(args.storm):
            pid = (
                project.id if i % 5 else 10_000 + i
            )  # every fifth names a project LS does not have
            payloads.append({"action": actions[i % len(actions)], "project": {"id": pid}})
        with ThreadPoolExecutor(8) as pool:
            latencies = list(pool.map(lambda p: timed(lambda: requests.post(
                f"{server.url}/webhook", json=p, timeout=10)), payloads))  # fmt: skip
        wait_for(lambda: not view.busy(), args.timeout, "the storm's rounds", 0.5)
        metrics = gauges(server.url)
        after_rounds = len(view.history(project.id))
        report = {
            "webhooks": len(payloads),
            "webhook_median_s": round(statistics.median(latencies), 4),
            "webhook_p99_s": round(sorted(latencies)[int(0.99 * len(latencies)) - 1], 4),
            "webhook_max_s": round(max(latencies), 4),
            "rounds_run": after_rounds - before["rounds"],
            "rounds_skipped": int(
                sum(v for k, v in metrics.items() if k.startswith("autoal_rounds_skipped_total"))
            ),
            "project_dirs": sorted(
                p.name for p in backend_args["model_dir"].iterdir() if p.is_dir()
            ),
            "rss_mb_before": round(before["rss_mb"]),
            "rss_mb_after": round(rss_mb(server.process.pid)),
        }
    print(f"storm: {report}", flush=True)
    return report


def round_running(url: str) -> bool:
    return gauges(url).get("autoal_round_running") == 1


def pushing(state: Path) -> bool:
    """True while the project record names a version being pushed."""
    return bool(json.loads(state.read_text()).get("pushing"))


def run(args) -> dict:
    env = {"AUTOAL_STRATEGY": args.strategy, "DEVICE": "cpu", "AUTOAL_RECONCILE_SECONDS": "10",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="autoal-chaos-") as tmp:
        root = Path(tmp)
        port, token, password = free_port(), "chaos-token-0123456789", "chaos-pass-0123"
        ls_args: dict[str, Any] = {"data_dir": root / "label-studio", "port": port, "token": token,
                                   "password": password}  # fmt: skip
        stack = contextlib.ExitStack()
        server = stack.enter_context(running_label_studio(**ls_args))
        ls = LabelStudioREST(server.url, token)
        backend_port = free_port()
        backend_args: dict[str, Any] = {"model_dir": root / "models", "label_studio_url": server.url, "api_key": token,
                        "port": backend_port, "extra_env": env, "timeout_s": 300}  # fmt: skip
        project = Project(ls, args.tasks, args.seed, "AutoAL chaos")
        with running_backend(**backend_args) as backend:
            project.connect(backend.url)
            project.label(12)
            wait_for(settled(ls, BackendView(backend.url), project.id, project.labeled), args.timeout,
                     "the first trained round", 0.5)  # fmt: skip
        report: dict = {"tasks": args.tasks}
        scenarios = set(args.scenarios.split(","))
        if "crash" in scenarios:
            report["crash"] = crash(args, ls, backend_args, project)
        if "storm" in scenarios:
            report["storm"] = storm(args, ls, backend_args, project)
        if "slow" in scenarios:
            report["slow"] = slow(args, ls, server.url, token, root, env)
        if "outage" in scenarios:
            report["outage"], restarted = outage(
                args, ls, dict(ls_args, stack=stack), backend_args, project
            )
            restarted.close()
        else:
            stack.close()
    report["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds Label Studio is down")
    parser.add_argument("--delay", type=float, default=5.0, help="slow scenario: seconds per call")
    parser.add_argument("--storm", type=int, default=300, help="webhooks in the storm")
    parser.add_argument("--strategy", default="uniform", help="the backend's AUTOAL_STRATEGY")
    parser.add_argument("--timeout", type=float, default=600.0, help="per wait, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scenarios", default="crash,storm,slow,outage", help="comma-separated, in this order"
    )
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - {"crash", "storm", "slow", "outage"}
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from crash, storm, slow, outage")
    report = run(args)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
