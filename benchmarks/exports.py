"""A Label Studio JSON export of a ``<Choices>`` project as a benchmark data set.

    python -m benchmarks.simulate --dataset export.json --label-config config.xml ...

Each task with a usable annotation becomes one item, labeled with the choice its annotators
agree on (as the backend agrees them: ``autoal_backend.kinds.choices``). The item is the task's
field that the config's object tag reads: a text, or an image given as a URL, a ``data:`` URI
or a path relative to the export file (Label Studio's ``/data/upload/...`` paths are looked up
under the export's folder too). A quarter of the items (seeded) is the test set. Span projects
take the span harness instead (``benchmarks.span_simulate``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import requests

from autoal_backend.kinds import parse_label_config
from autoal_backend.kinds.choices import LabelSpec
from autoal_backend.rounds.sync import recency
from autoal_backend.task_data import TaskDataError, decode_data_uri, decode_image
from benchmarks.datasets import RawData, _split
from model.encoders import DEFAULT_ENCODERS

TEST_FRACTION = 0.25
FETCH_TIMEOUT_S = 30


def load_image(value: str, folder: Path):
    """The image a task field names: a ``data:`` URI, an http(s) URL, or a file under
    ``folder`` (the export's), its leading ``/`` ignored when the absolute path does not exist."""
    if value.startswith("data:"):
        return decode_image(decode_data_uri(value))
    if value.startswith(("http://", "https://")):
        reply = requests.get(value, timeout=FETCH_TIMEOUT_S)
        reply.raise_for_status()
        return decode_image(reply.content)
    path = Path(value)
    for candidate in (path, folder / value.lstrip("/"), folder / path.name):
        if candidate.is_file():
            return decode_image(candidate.read_bytes())
    raise TaskDataError(f"image {value!r} is neither a data: URI, a URL, nor a file under {folder}")


def load_choices_export(path: Path, label_config: str, seed: int = 0) -> RawData:
    """The export's annotated tasks as a single-label data set (``RawData``)."""
    spec = parse_label_config(label_config)
    if not isinstance(spec, LabelSpec):
        raise ValueError(f"{path}: the label config is a {spec.kind} project; expected <Choices>")
    if spec.multilabel:
        raise ValueError(
            f"{path}: multi-choice projects are not simulated yet (one class per item)"
        )
    if spec.value_type == "url":
        raise ValueError(
            f'{path}: a <Text valueType="url"> project is not simulated (texts must be in the export)'
        )
    tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(tasks, list):
        raise ValueError(f"{path}: expected a JSON list of tasks (Label Studio's JSON export)")
    items: list = []
    labels: list[int] = []
    skipped: dict[str, int] = {}
    index = spec.class_index()
    for task in tasks:
        data = task.get("data") if isinstance(task, dict) else None
        value = data.get(spec.data_key) if isinstance(data, dict) else None
        annotations = sorted(  # oldest first, as the backend agrees them (ties: the latest)
            (
                a
                for a in (task.get("annotations") or [])
                if isinstance(a, dict) and not a.get("was_cancelled")
            ),
            key=recency,
        )
        votes = [v for v, _ in (spec.vote(a) for a in annotations) if v]
        if not isinstance(value, str) or not votes:
            skipped["no usable annotation or field"] = (
                skipped.get("no usable annotation or field", 0) + 1
            )
            continue
        try:
            item = load_image(value, Path(path).parent) if spec.modality == "image" else value
        except (TaskDataError, OSError, requests.RequestException) as exc:
            reason = type(exc).__name__
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        items.append(item)
        labels.append(index[spec.agree(votes)[0]])
    if len(items) < 10:
        raise ValueError(
            f"{path}: {len(items)} usable annotated tasks (skipped: {skipped or 'none'}); need at least 10"
        )
    label_array = np.asarray(labels, dtype=np.int64)
    test_size = max(1, int(round(len(items) * TEST_FRACTION)))
    parts = _split(items, label_array, test_size, seed)
    return RawData(*parts, list(spec.labels), spec.modality, DEFAULT_ENCODERS[spec.modality])
