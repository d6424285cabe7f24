"""Per-project state on disk under MODEL_DIR/<project_id>/, written atomically.

Layout: ``project.json`` (label config, round counter, current model version, the round each
task was first seen labeled, the project's own settings), ``model.pt`` (the latest round's
classifier as ``model.export`` writes it: encoder, standardisation, head, labels), ``selector.pt``
(the selector's state), ``ranking.json`` (the latest round's score and predicted choices per
unlabeled task, served by /predict), ``history.jsonl`` (one line per round) and
``embeddings/`` (the encoder cache). A restart reads these back and carries on.
"""

import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path

import torch

from autoal_backend.kinds import ProjectSpec, parse_label_config


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file and rename: readers (and a crash) see the
    old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, value: object) -> None:
    atomic_write_bytes(path, json.dumps(value, separators=(",", ":")).encode())


def atomic_torch_save(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(value, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def version_prefix(project_id: int) -> str:
    """What every model version this backend writes for a project starts with: the backend
    deletes only predictions under its own versions, never another model's."""
    return f"autoal-{project_id}-r"


def initial_version(project_id: int) -> str:
    return round_version(project_id, 0)


def round_version(project_id: int, round_number: int) -> str:
    return f"{version_prefix(project_id)}{round_number}"


@dataclass
class Ranking:
    """The latest round's answer for /predict.

    Attributes:
        model_version: the version the predictions were written under.
        scores: {task id: score}; lower = label sooner (1 - rank-normalised priority).
        choices: {task id: predicted choice values}; empty in a cold-start round.
        why: {task id: the strategy that contributed most to the task's priority}.
        confidence: {task id: the model's probability of each predicted choice}.
        audit: the tasks placed in the queue at random (AUTOAL_AUDIT_FRACTION).
        certainty: {task id: the model's probability that its whole guess is right} (the top
            class's probability; for multi-label the product over labels of max(p, 1 - p)).
    """

    model_version: str
    scores: dict[int, float] = field(default_factory=dict)
    choices: dict[int, list[str]] = field(default_factory=dict)
    why: dict[int, str] = field(default_factory=dict)
    confidence: dict[int, list[float]] = field(default_factory=dict)
    audit: set[int] = field(default_factory=set)
    certainty: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "model_version": self.model_version,
            "scores": {str(k): v for k, v in self.scores.items()},
            "choices": {str(k): v for k, v in self.choices.items()},
            "why": {str(k): v for k, v in self.why.items()},
            "confidence": {str(k): v for k, v in self.confidence.items()},
            "audit": sorted(self.audit),
            "certainty": {str(k): v for k, v in self.certainty.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "Ranking":
        return cls(
            model_version=str(data["model_version"]),
            scores={int(k): float(v) for k, v in data.get("scores", {}).items()},
            choices={int(k): list(v) for k, v in data.get("choices", {}).items()},
            why={int(k): str(v) for k, v in data.get("why", {}).items()},
            confidence={
                int(k): [float(p) for p in v] for k, v in data.get("confidence", {}).items()
            },
            audit={int(t) for t in data.get("audit", [])},
            certainty={int(k): float(v) for k, v in data.get("certainty", {}).items()},
        )


@dataclass
class ProjectRecord:
    """What is kept about one project between rounds (``project.json``).

    Attributes:
        settings: the project's own setting overrides from /setup's extra params
            ({environment variable: raw value}); empty = the environment's settings.
        pushing: the version whose predictions are being imported, written before the import
            and cleared once the project points at it: after a crash, the restart knows which
            predictions may be left over.
        fingerprint: what the last completed round learned from (labels, tasks, config,
            settings): a round that would see the same is skipped.
        ls_state: Label Studio's counts when that round read the project (tasks,
            annotations, skips): the reconciliation compares them to catch up on work missed
            while the backend was down.
    """

    project_id: int
    label_config: str
    round: int = 0
    model_version: str = ""
    labeled_round: dict[int, int] = field(default_factory=dict)
    stale_versions: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    pushing: str = ""
    fingerprint: str = ""
    ls_state: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model_version:
            self.model_version = initial_version(self.project_id)

    @property
    def spec(self) -> ProjectSpec:
        return parse_label_config(self.label_config)

    def to_json(self) -> dict:
        data = asdict(self)
        data["labeled_round"] = {str(k): v for k, v in self.labeled_round.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ProjectRecord":
        return cls(
            project_id=int(data["project_id"]),
            label_config=str(data["label_config"]),
            round=int(data.get("round", 0)),
            model_version=str(data.get("model_version", "")),
            labeled_round={int(k): int(v) for k, v in data.get("labeled_round", {}).items()},
            stale_versions=[str(v) for v in data.get("stale_versions", [])],
            settings={str(k): str(v) for k, v in data.get("settings", {}).items()},
            pushing=str(data.get("pushing", "")),
            fingerprint=str(data.get("fingerprint", "")),
            ls_state={str(k): int(v) for k, v in data.get("ls_state", {}).items()},
        )


# The fields of a project record that a round writes; /setup and webhooks own the others
# (label_config, settings).
ROUND_FIELDS = (
    "round",
    "model_version",
    "labeled_round",
    "stale_versions",
    "pushing",
    "fingerprint",
    "ls_state",
)


class ProjectStore:
    """Files of every project under ``root``; each project in its own directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def directory(self, project_id: int) -> Path:
        return self.root / str(int(project_id))

    def embeddings_dir(self, project_id: int) -> Path:
        return self.directory(project_id) / "embeddings"

    def project_ids(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in self.root.iterdir()
            if p.name.isdigit() and (p / "project.json").is_file()
        )

    # --- project record -----------------------------------------------------------------
    def load_record(self, project_id: int) -> ProjectRecord | None:
        path = self.directory(project_id) / "project.json"
        if not path.is_file():
            return None
        return ProjectRecord.from_json(json.loads(path.read_text()))

    def save_record(self, record: ProjectRecord) -> None:
        """Write ``record`` whole: for a new project. Changes to a known one go through
        ``update_record``, so that two writers never undo each other."""
        with self._lock:
            atomic_write_json(self.directory(record.project_id) / "project.json", record.to_json())

    def update_record(self, project_id: int, **fields) -> ProjectRecord | None:
        """Set ``fields`` of the project's record as it is on disk now, atomically: the one way
        a known record changes. A round writes only what it owns (``ROUND_FIELDS``), /setup
        the label config and settings, so a setting changed while a round runs is kept. None
        when the project has no record."""
        unknown = set(fields) - {f.name for f in dataclass_fields(ProjectRecord)}
        if unknown:
            raise ValueError(f"a project record has no field(s) {sorted(unknown)}")
        with self._lock:
            record = self.load_record(project_id)
            if record is None:
                return None
            for name, value in fields.items():
                setattr(record, name, value)
            atomic_write_json(self.directory(project_id) / "project.json", record.to_json())
            return record

    # --- model and selector -------------------------------------------------------------
    def save_model(self, project_id: int, state: dict | None) -> None:
        path = self.directory(project_id) / "model.pt"
        if state is None:
            if path.exists():
                path.unlink()
            return
        atomic_torch_save(path, state)

    def model_path(self, project_id: int) -> Path:
        return self.directory(project_id) / "model.pt"

    def load_model(self, project_id: int) -> dict | None:
        path = self.model_path(project_id)
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None

    def save_selector(self, project_id: int, state: dict) -> None:
        atomic_torch_save(self.directory(project_id) / "selector.pt", state)

    def load_selector(self, project_id: int) -> dict | None:
        path = self.directory(project_id) / "selector.pt"
        # Selector states may hold plain Python containers next to tensors.
        return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None

    # --- task index (incremental sync) --------------------------------------------------
    def save_task_index(self, project_id: int, data_key: str, tasks: dict[int, dict]) -> None:
        """Remember each task's content reference ({id: data}) so the next sync lists only
        new tasks. Only the field the label config reads is kept."""
        values = {
            str(i): (d.get(data_key) if isinstance(d, dict) else None) for i, d in tasks.items()
        }
        atomic_write_json(
            self.directory(project_id) / "tasks.json", {"data_key": data_key, "tasks": values}
        )

    def load_task_index(self, project_id: int, data_key: str) -> dict[int, dict] | None:
        """{id: data} from the last sync; None when there is none or it was made for another
        data field (the label config changed)."""
        path = self.directory(project_id) / "tasks.json"
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        if saved.get("data_key") != data_key:
            return None
        return {int(i): ({data_key: v} if v is not None else {}) for i, v in saved["tasks"].items()}

    # --- owed work ----------------------------------------------------------------------
    def mark_pending(self, project_id: int, reason: str, force: bool = False) -> int:
        """Record on disk that ``project_id`` owes a round (survives a crash); returns the
        request's ticket. Requests add up: reasons are kept, ``force`` sticks."""
        path = self.directory(project_id) / "pending.json"
        with self._lock:
            current: dict = (
                json.loads(path.read_text()) if path.is_file() else {"ticket": 0, "reasons": []}
            )
            reasons = [r for r in current.get("reasons", []) if r != reason][-4:] + [reason]
            data: dict = {
                "ticket": int(current.get("ticket", 0)) + 1,
                "reasons": reasons,
                "force": bool(current.get("force")) or force,
            }
            atomic_write_json(path, data)
            return int(data["ticket"])

    def pending(self, project_id: int) -> dict | None:
        path = self.directory(project_id) / "pending.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def clear_pending(self, project_id: int, ticket: int) -> bool:
        """Forget the owed round once a round that started at ``ticket`` has done it; a
        request that came in during the round (a newer ticket) stays owed."""
        path = self.directory(project_id) / "pending.json"
        with self._lock:
            if not path.is_file():
                return True
            if int(json.loads(path.read_text()).get("ticket", 0)) != ticket:
                return False
            path.unlink()
            return True

    def save_last_error(self, project_id: int, error: dict | None) -> None:
        """The last failed round's error in plain words (None: the last round went well)."""
        path = self.directory(project_id) / "last_error.json"
        if error is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_json(path, error)

    def load_last_error(self, project_id: int) -> dict | None:
        path = self.directory(project_id) / "last_error.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def forget(self, project_id: int) -> None:
        """Remove everything kept about a project (one Label Studio does not know)."""
        import shutil

        with self._lock:
            shutil.rmtree(self.directory(project_id), ignore_errors=True)

    # --- ranking and history ------------------------------------------------------------
    def save_ranking(self, project_id: int, ranking: Ranking) -> None:
        atomic_write_json(self.directory(project_id) / "ranking.json", ranking.to_json())

    def load_ranking(self, project_id: int) -> Ranking | None:
        path = self.directory(project_id) / "ranking.json"
        return Ranking.from_json(json.loads(path.read_text())) if path.is_file() else None

    def append_history(self, project_id: int, entry: dict) -> None:
        """Add one round to ``history.jsonl``; the file is rewritten atomically so that a
        crash never leaves a half-written line."""
        path = self.directory(project_id) / "history.jsonl"
        with self._lock:
            old = path.read_bytes() if path.is_file() else b""
            line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
            atomic_write_bytes(path, old + line)

    def load_history(self, project_id: int) -> list[dict]:
        path = self.directory(project_id) / "history.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
