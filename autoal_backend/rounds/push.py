"""Push: a round's predictions into Label Studio, and the project pointed at them.

The version being pushed is recorded before the import, so a crash at any point leaves a
version the restart knows; once the project points at the new version, the older ones are
deleted (only this backend's own: ``store.version_prefix``) by ``delete_stale``, which the
round calls last: Label Studio deletes predictions one by one in a transaction (~2.4 ms each
on 1.23.2), and an annotator's ``/next`` that comes meanwhile waits for it. ``save_record``
is how a round writes the project record: only the fields a round owns.
"""

import logging

from autoal_backend.ls_client import LabelStudioClient
from autoal_backend.settings import Settings
from autoal_backend.store import ROUND_FIELDS, ProjectRecord, ProjectStore, version_prefix

log = logging.getLogger(__name__)

UNCERTAINTY_SAMPLING = "Uncertainty sampling"


def save_record(store: ProjectStore, record: ProjectRecord) -> None:
    """Write the fields a round owns (``ROUND_FIELDS``) into the record on disk; the label
    config and settings that /setup or a webhook stored while the round ran are kept (the
    next round uses them)."""
    owned = {name: getattr(record, name) for name in ROUND_FIELDS}
    if store.update_record(record.project_id, **owned) is None:
        store.save_record(record)


def push(client: LabelStudioClient, store: ProjectStore, record: ProjectRecord, version: str,
         predictions: list[dict], settings: Settings) -> None:  # fmt: skip
    """Import ``predictions`` under ``version`` and point the project at it (and at uncertainty
    sampling). The versions it replaces are left in ``record.stale_versions`` (saved: a crash
    before they are deleted leaves a clean-up for the restart) for the round to delete once
    its other work is done (``delete_stale``)."""
    project_id = record.project_id
    stale = [v for v in [record.model_version, *record.stale_versions] if v != version]
    record.stale_versions = stale
    # Recorded before the import: a crash from here on leaves a version the restart knows.
    record.pushing = version
    save_record(store, record)
    client.import_predictions(project_id, predictions)
    fields: dict[str, object] = {"model_version": version}
    if settings.set_sampling:
        fields["sampling"] = UNCERTAINTY_SAMPLING
    client.update_project(project_id, **fields)
    record.model_version = version
    record.pushing = ""
    save_record(store, record)


def clean_up(
    client: LabelStudioClient, store: ProjectStore, record: ProjectRecord, project: dict | None
) -> None:
    """After a crash or a failed push: delete every one of our versions that is not the
    project's live one in Label Studio, so that at most the current version holds our
    predictions. A push that got as far as pointing the project at its version (then
    crashed) is adopted as current."""
    live = str((project or client.get_project(record.project_id)).get("model_version") or "")
    own = version_prefix(record.project_id)
    if live.startswith(own):
        record.model_version = live
    leftovers = [
        v for v in client.model_versions(record.project_id) if v.startswith(own) and v != live
    ]
    left = delete_stale(client, record.project_id, leftovers)
    if leftovers:
        log.info("project %s: deleted the predictions of %s (left over; live version %s)",
                 record.project_id, sorted(set(leftovers) - set(left)), live or "none")  # fmt: skip
    record.pushing = ""
    record.stale_versions = left
    save_record(store, record)


def delete_stale(client: LabelStudioClient, project_id: int, versions: list[str]) -> list[str]:
    """Delete our own older versions' predictions; returns those that could not be
    deleted (retried next round)."""
    left = []
    own = version_prefix(project_id)
    for version in versions:
        if not version.startswith(own):
            continue  # never touch predictions another model wrote
        try:
            client.delete_model_version(project_id, version)
        except Exception as exc:
            log.warning(
                "project %s: could not delete predictions of %s: %s", project_id, version, exc
            )
            left.append(version)
    return left
