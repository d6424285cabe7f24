import logging
import os

import pytest

from autoal_backend.store import ProjectRecord, ProjectStore, atomic_write_bytes
from tests.backend.conftest import make_backend, make_settings, text_project
from tests.backend.fakes import TEXT_CONFIG


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    atomic_write_bytes(path, b"old")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_records_and_history_round_trip(tmp_path):
    store = ProjectStore(tmp_path)
    record = ProjectRecord(
        5, TEXT_CONFIG, round=3, labeled_round={11: 1, 12: 3}, stale_versions=["x"]
    )
    store.save_record(record)
    assert store.load_record(5) == record
    assert store.load_record(6) is None
    store.append_history(5, {"round": 1})
    store.append_history(5, {"round": 2})
    assert store.load_history(5) == [{"round": 1}, {"round": 2}]
    assert store.project_ids() == [5]


def test_sampling_is_left_alone_when_turned_off(tmp_path, ls):
    text_project(ls, 7)
    backend = make_backend(make_settings(tmp_path, AUTOAL_SET_SAMPLING="false"), ls)
    backend._run_round(7)
    assert ls.projects[7]["sampling"] == "Sequential sampling"
    assert ls.projects[7]["model_version"] == "autoal-7-r1"


def test_no_secret_reaches_the_log(tmp_path, ls, caplog):
    text_project(ls, 7)
    settings = make_settings(tmp_path, BASIC_AUTH_USER="ann", BASIC_AUTH_PASS="pass-xyz-123")
    with caplog.at_level(logging.DEBUG):
        backend = make_backend(settings, ls)
        logging.getLogger("autoal_backend").info("settings %r", settings)
        backend.setup(
            {
                "project": "7.1",
                "schema": TEXT_CONFIG,
                "access_token": "ls-token-456",
                "hostname": "http://ls",
            }
        )
        backend.worker.wait_idle(60)
        backend.worker.stop()
    text = caplog.text
    assert "round 1" in text or "autoal-7-r1" in text  # the round did log
    for secret in (ls.token, "pass-xyz-123", "ls-token-456"):
        assert secret not in text


def test_a_strategy_sent_to_setup_while_a_round_runs_is_kept(tmp_path, ls, monkeypatch):
    """The race a round used to lose: it saved its own copy of the record, older than the
    settings /setup stored while it ran, so both that round and the next ran the old strategy."""
    text_project(ls, 7)
    backend = make_backend(make_settings(tmp_path), ls)
    backend.register(7, TEXT_CONFIG)
    runner = backend.runner
    real_embed = runner.embedder.embed

    def embed_while_setup_changes_the_strategy(*args, **kwargs):
        # /setup lands mid-round (the worker queues the forced round it asks for).
        backend.set_project_settings(7, {"AUTOAL_STRATEGY": "margin"})
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(runner.embedder, "embed", embed_while_setup_changes_the_strategy)
    backend._run_round(7)
    assert backend.store.load_record(7).settings == {"AUTOAL_STRATEGY": "margin"}
    monkeypatch.setattr(runner.embedder, "embed", real_embed)
    backend._run_round(7)
    history = backend.store.load_history(7)
    assert history[0]["strategy"] != "margin" and history[1]["strategy"] == "margin"
    assert backend.store.load_record(7).round == 2


def test_update_record_changes_only_the_fields_named(tmp_path):
    store = ProjectStore(tmp_path)
    store.save_record(
        ProjectRecord(5, TEXT_CONFIG, round=3, settings={"AUTOAL_STRATEGY": "uniform"})
    )
    assert store.update_record(5, round=4).settings == {"AUTOAL_STRATEGY": "uniform"}
    assert store.load_record(5).round == 4
    assert store.update_record(6, round=1) is None
    with pytest.raises(ValueError, match="no field"):
        store.update_record(5, rounds=1)
