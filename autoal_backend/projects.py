"""Projects: the one owner of project records on the service side.

/setup, webhooks and predict register a project or change its label config and settings only
through ``Projects``; a round writes only the fields it owns (``rounds.push.save_record``).
Both go through ``ProjectStore.update_record``, which sets named fields on the record as it is
on disk, so neither undoes the other's change.
"""

import logging
import threading

from autoal_backend.errors import RequestError
from autoal_backend.kinds import parse_label_config
from autoal_backend.store import ProjectRecord, ProjectStore

log = logging.getLogger(__name__)


class Projects:
    """Registers projects and changes their label config and settings."""

    def __init__(self, store: ProjectStore, max_projects: int) -> None:
        self.store = store
        self.max_projects = max_projects
        self._lock = threading.Lock()

    def register(self, project_id: int, label_config: str) -> ProjectRecord:
        """Remember ``project_id`` with its label config (UnsupportedConfigError if the
        config is not one we can learn from; RequestError 409 when the backend already tracks
        ``AUTOAL_MAX_PROJECTS``). A config whose labels or fields changed drops the selector
        state (its classes no longer mean the same)."""
        spec = parse_label_config(label_config)
        with self._lock:
            record = self.store.load_record(project_id)
            if record is None:
                tracked = len(self.store.project_ids())
                if tracked >= self.max_projects:
                    raise RequestError(
                        f"this backend already tracks {tracked} projects, its limit "
                        f"(AUTOAL_MAX_PROJECTS={self.max_projects}); project {project_id} "
                        "is not added",
                        409,
                    )
                record = ProjectRecord(project_id, label_config)
                self.store.save_record(record)
            elif record.label_config != label_config:
                if record.spec != spec:
                    selector = self.store.directory(project_id) / "selector.pt"
                    selector.unlink(missing_ok=True)
                if record.spec.kind != spec.kind:
                    # The last ranking's guesses are another kind's (choice values, not spans):
                    # /predict answers "not ranked yet" until this kind's first round.
                    (self.store.directory(project_id) / "ranking.json").unlink(missing_ok=True)
                record = self.store.update_record(project_id, label_config=label_config) or record
            return record

    def set_settings(self, project_id: int, overrides: dict[str, str]) -> bool:
        """Record a project's own settings (already validated); True when they changed."""
        with self._lock:
            record = self.store.load_record(project_id)
            if record is None or record.settings == overrides:
                return False
            log.info("project %s: settings %s (were %s)", project_id, overrides or "from the environment",
                     record.settings or "from the environment")  # fmt: skip
            self.store.update_record(project_id, settings=dict(overrides))
            return True

    def record(self, project_id: int) -> ProjectRecord:
        record = self.store.load_record(project_id)
        if record is None:
            raise RequestError(
                f"unknown project {project_id}: call /setup (or send its label_config) first", 404
            )
        return record
