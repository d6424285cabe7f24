"""Label Studio at the size of a big project: what each call of a round costs as the task count grows.

    python -m benchmarks.ls_scale --tasks 10000,30000,100000 --labels 300 --repeats 3

Starts a real Label Studio (``scripts.label_studio``, no backend), creates one text project and
grows it: the tasks are imported in chunks of 2,000 up to each size of ``--tasks`` in turn, and
at each size every Label Studio call a backend round makes is timed through the backend's own
client (``benchmarks.queue_latency.measure_label_studio_calls``: the paged task list, the
count, the annotated-only export, the full and the incremental sync, importing 100 and 1,000
predictions, the PATCH that points the project at a version, ``/next``, deleting one version of
100 and 1,000 predictions). ``--labels`` tasks are annotated once, before the first size, so
the export has work to do and stays the same size (a round exports the annotated tasks only).

For each call, the growth exponent from the smallest to the largest size (seconds ~ tasks^k;
k near 0: independent of the task count, near 1: linear, above 1: faster than linear). The
last line printed is one JSON object: ``{"sizes": {"<N>": {"import_seconds", "calls": {...}}},
"growth_exponents": {...}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

from benchmarks.queue_latency import (
    IMPORT_CHUNK,
    LABEL_CONFIG,
    LabelStudioREST,
    load_texts,
    measure_label_studio_calls,
    wait_for,
)
from scripts.label_studio import running_label_studio


def grow_to(
    ls: LabelStudioREST, project_id: int, texts: list[str], have: int, want: int, timeout: float
) -> float:
    """Import ``texts[have:want]`` in chunks; seconds until Label Studio counts ``want`` tasks."""
    start = time.perf_counter()
    for first in range(have, want, IMPORT_CHUNK):
        chunk = [{"text": t} for t in texts[first : min(want, first + IMPORT_CHUNK)]]
        ls.call("POST", f"/api/projects/{project_id}/import", json=chunk)
    wait_for(
        lambda: ls.call("GET", f"/api/projects/{project_id}/").json().get("task_number") == want,
        timeout,
        f"{want} imported tasks",
        0.5,
    )
    return time.perf_counter() - start


def growth_exponents(sizes: dict[int, dict]) -> dict[str, float | None]:
    """{call: k} with seconds ~ tasks^k between the smallest and the largest size."""
    if len(sizes) < 2:
        return {}
    small, large = min(sizes), max(sizes)
    out: dict[str, float | None] = {}
    for name, seconds in sizes[large]["calls"].items():
        before = sizes[small]["calls"].get(name)
        out[name] = (
            round(math.log(seconds / before) / math.log(large / small), 2)
            if before and seconds and before > 0 and seconds > 0
            else None
        )
    return out


def run(args: argparse.Namespace) -> dict:
    sizes = sorted({int(s) for s in args.tasks.split(",") if s.strip()})
    if not sizes or sizes[0] <= args.labels:
        raise SystemExit("--tasks: sizes must exceed --labels")
    pairs = load_texts(sizes[-1], args.seed)
    texts = [text for text, _ in pairs]
    truth = dict(pairs)
    report: dict[int, dict] = {}
    extra_env = dict(item.split("=", 1) for item in args.ls_env)
    with (
        tempfile.TemporaryDirectory(prefix="autoal-ls-scale-") as root,
        running_label_studio(data_dir=Path(root) / "label-studio", extra_env=extra_env) as server,
    ):
        print(f"Label Studio at {server.url} ({server.startup_seconds:.0f} s)", flush=True)
        ls = LabelStudioREST(server.url, server.token)
        project = ls.call(
            "POST", "/api/projects", json={"title": "AutoAL scale", "label_config": LABEL_CONFIG}
        )
        project_id = int(project.json()["id"])
        have = 0
        for size in sizes:
            imported = size - have
            seconds = grow_to(ls, project_id, texts, have, size, args.timeout)
            print(f"{size:,} tasks: imported {imported:,} in {seconds:.1f} s", flush=True)
            if have == 0:
                for _ in range(args.labels):
                    task = ls.next_task(project_id)
                    ls.annotate(task["id"], truth[task["data"]["text"]])
            have = size
            calls = measure_label_studio_calls(server.url, server.token, project_id, args.repeats)
            report[size] = {
                "import_seconds": round(seconds, 2),
                "imported": imported,
                "calls": calls,
            }
            print(
                f"{size:,} tasks: " + ", ".join(f"{k} {v:.2f}" for k, v in calls.items()),
                flush=True,
            )
    return {
        "sizes": {str(k): v for k, v in report.items()},
        "growth_exponents": growth_exponents(report),
        "labels": args.labels,
        "repeats": args.repeats,
        "label_studio_env": extra_env,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ls_scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--tasks", default="10000,30000,100000", help="comma-separated project sizes, grown in turn"
    )
    parser.add_argument(
        "--labels", type=int, default=300, help="tasks annotated before the first size"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="repeats of each timed call (medians)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="per wait, seconds")
    parser.add_argument(
        "--ls-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for Label Studio (repeatable), e.g. "
        "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short=false "
        "for its default prediction import",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bad = [item for item in args.ls_env if "=" not in item or item.startswith("=")]
    if bad:
        raise SystemExit(f"--ls-env: expected KEY=VALUE, got {bad}")
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
