"""A whole round against the fake Label Studio: sync, embed, train, rank, push, persist."""

import torch

from autoal_backend.store import round_version
from tests.backend.conftest import make_backend, make_settings, text_project
from tests.backend.fakes import FakeEncoder


def run(backend, project_id):
    backend._run_round(project_id)


def test_round_pushes_top_window_sets_version_and_sampling(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=30)
    backend = make_backend(make_settings(tmp_path), ls)
    run(backend, 7)  # registers the project from Label Studio's label config

    version = round_version(7, 1)
    assert ls.versions(7) == {version: 10}  # the window, not the pool
    assert ls.projects[7]["model_version"] == version
    assert ls.projects[7]["sampling"] == "Uncertainty sampling"
    pushed = sorted(ls.predictions, key=lambda p: p["score"])
    assert pushed[0]["score"] == 0.0  # the first task to label scores lowest
    labeled_ids = {700 + i for i in range(12)}
    assert not labeled_ids & {p["task"] for p in pushed}
    # Predicted choices follow the a/b signal the fake encoder exposes.
    for position, p in enumerate(pushed):
        task = next(t for t in ls.tasks[7] if t["id"] == p["task"])
        expected = "pos" if "a" in task["data"]["text"] else "neg"
        [region] = p["result"]
        confidence = region.pop("score")  # the model's probability of its guess
        assert 0.5 < confidence <= 1.0
        assert region == {
            "from_name": "sentiment", "to_name": "text", "type": "choices",
            "value": {"choices": [expected]},
            "meta": {"text": [
                f"AutoAL {version}: #{position + 1} of 30 to label; "
                f"model's guess {expected} ({confidence:.0%}); main reason: entropy"
            ]},
        }  # fmt: skip
    entry = backend.store.load_history(7)[-1]
    assert entry["round"] == 1 and entry["model_version"] == version
    assert entry["labeled"] == 12 and entry["unlabeled"] == 30
    assert entry["label_distribution"] == {"pos": 6, "neg": 6}
    assert entry["mean_weights"] == {"entropy": 1.0}
    assert [t["task"] for t in entry["top"]] == [p["task"] for p in pushed]
    assert all(t["strategy"] == "entropy" for t in entry["top"])
    assert entry["validation_accuracy"] is not None and entry["validation_accuracy"] > 0.9
    assert set(entry["seconds"]) >= {"sync", "embed", "train", "select", "push", "total"}


def test_second_round_deletes_previous_version_and_embeds_only_new_tasks(tmp_path, ls):
    text_project(ls, 7)
    encoder = FakeEncoder()
    backend = make_backend(make_settings(tmp_path), ls, encoder)
    run(backend, 7)
    first_calls = sum(encoder.calls)
    ls.add_task(7, 799, {"text": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})
    ls.annotate(7, 712, ["pos"])
    run(backend, 7)
    assert sum(encoder.calls) - first_calls == 1  # only the new task was embedded
    assert ls.versions(7) == {round_version(7, 2): 10}  # round 1's predictions deleted
    assert ls.projects[7]["model_version"] == round_version(7, 2)
    history = backend.store.load_history(7)
    assert [h["round"] for h in history] == [1, 2]
    assert history[1]["labeled"] == 13
    assert [h["full_sync"] for h in history] == [True, False]  # round 2 listed only task 799
    assert 799 in backend.ranking(7).scores
    ls.delete_task(7, 799)
    run(backend, 7)
    assert backend.store.load_history(7)[-1]["full_sync"] is True
    assert 799 not in backend.ranking(7).scores


def test_cold_start_pushes_empty_results_with_diversity_scores(tmp_path, ls):
    text_project(ls, 7, labeled=2, unlabeled=30)
    backend = make_backend(make_settings(tmp_path), ls)
    run(backend, 7)
    assert len(ls.predictions) == 10
    assert all(p["result"] == [] for p in ls.predictions)
    assert sorted(p["score"] for p in ls.predictions)[0] == 0.0
    entry = backend.store.load_history(7)[-1]
    assert entry["cold_start"] is True and entry["selection"] == "kmeans (cold start)"


def test_restart_resumes_version_history_and_labeled_rounds(tmp_path, ls):
    text_project(ls, 7)
    settings = make_settings(tmp_path)
    first = make_backend(settings, ls)
    run(first, 7)
    ls.annotate(7, 713, ["neg"])
    restarted = make_backend(settings, ls)  # a new process on the same MODEL_DIR
    asked = {"tasks": [{"id": i} for i in range(712, 742)], "project": "7.1"}
    assert restarted.predict(asked) == first.predict(asked)  # the ranking is read back
    assert restarted.setup({"project": "7.123", "schema": ls.projects[7]["label_config"]}) == {
        "model_version": round_version(7, 1)
    }
    run(restarted, 7)
    record = restarted.store.load_record(7)
    assert record.round == 2 and record.model_version == round_version(7, 2)
    assert record.labeled_round[700] == 1 and record.labeled_round[713] == 2
    assert restarted.store.load_model(7) is not None
    assert len(restarted.store.load_history(7)) == 2
    assert ls.versions(7) == {round_version(7, 2): 10}


def test_unreadable_task_is_skipped_then_retried(tmp_path, ls):
    from tests.backend.fakes import IMAGE_CONFIG, png_bytes

    ls.add_project(3, IMAGE_CONFIG)
    colours = {"red": (250, 0, 0), "green": (0, 250, 0), "blue": (0, 0, 250)}
    for i in range(12):
        name = list(colours)[i % 3]
        ls.files[f"{i}.png"] = png_bytes(colours[name])
        ls.add_task(
            3,
            300 + i,
            {"image": f"/data/upload/{i}.png"},
            [name] if i < 6 else None,
            from_name="colour",
            to_name="img",
        )
    ls.add_task(3, 399, {"image": "/data/upload/missing.png"})
    encoder = FakeEncoder("fake-image", "image")
    backend = make_backend(make_settings(tmp_path, AUTOAL_MIN_LABELS=3), ls, encoder)
    run(backend, 3)
    entry = backend.store.load_history(3)[-1]
    assert entry["skipped"] == 1 and entry["unlabeled"] == 6
    assert 399 not in {p["task"] for p in ls.predictions}
    # Multi-choice: the predicted colours are the task's own.
    for p in ls.predictions:
        index = p["task"] - 300
        assert p["result"][0]["value"]["choices"] == [list(colours)[index % 3]]
    ls.files["missing.png"] = png_bytes((250, 0, 0))
    run(backend, 3)
    assert backend.store.load_history(3)[-1]["skipped"] == 0
    assert 399 in backend.ranking(3).scores


def test_projects_are_isolated(tmp_path, ls):
    text_project(ls, 7)
    text_project(ls, 8)
    backend = make_backend(make_settings(tmp_path), ls)
    run(backend, 7)
    run(backend, 8)
    assert ls.versions(7) == {round_version(7, 1): 10}
    assert ls.versions(8) == {round_version(8, 1): 10}
    assert backend.store.directory(7) != backend.store.directory(8)
    assert set(backend.ranking(7).scores).isdisjoint(backend.ranking(8).scores)


def test_failed_push_keeps_old_version_and_cleans_up_later(tmp_path, ls):
    text_project(ls, 7)
    backend = make_backend(make_settings(tmp_path), ls)
    run(backend, 7)
    ls.fail_import = True
    try:
        run(backend, 7)
    except Exception as exc:
        assert "import/predictions" in str(exc)
    else:
        raise AssertionError("the push should have failed")
    assert ls.projects[7]["model_version"] == round_version(7, 1)
    ls.fail_import = False
    run(backend, 7)
    assert ls.versions(7) == {round_version(7, 3): 10}
    assert torch.tensor([h["round"] for h in backend.store.load_history(7)]).tolist() == [1, 3]


def test_autoal_selector_runs_and_its_state_survives_a_restart(tmp_path, ls):
    text_project(ls, 7, labeled=16, unlabeled=30)
    settings = make_settings(tmp_path, AUTOAL_STRATEGY="autoal")
    run(make_backend(settings, ls), 7)
    backend = make_backend(settings, ls)  # restart: the selector state is read back
    saved = backend.store.load_selector(7)
    assert saved  # AutoAL keeps its SearchNet between rounds
    ls.annotate(7, 716, ["pos"])
    run(backend, 7)
    entry = backend.store.load_history(7)[-1]
    assert entry["strategy"] == "autoal" and entry["cold_start"] is False
    weights = entry["mean_weights"]
    assert len(weights) > 1 and abs(sum(weights.values()) - 1.0) < 1e-4
    assert all(t["strategy"] in weights for t in entry["top"])


def test_a_restart_with_everything_cached_never_builds_the_encoder(tmp_path, ls):
    from autoal_backend.service import Backend

    text_project(ls, 7)
    settings = make_settings(tmp_path)
    encoder = FakeEncoder()
    run(make_backend(settings, ls, encoder), 7)
    built = []

    def factory(name, device):
        built.append(name)
        return encoder

    restarted = Backend(settings, encoder_factory=factory, session=ls.session())
    restarted.runner.embedder.identity = lambda name: (encoder.name, encoder.dim)
    run(restarted, 7)
    assert built == []  # every task's embedding came from the cache
    ls.add_task(7, 798, {"text": "cccccccccccccccccc"})
    run(restarted, 7)
    assert built == [settings.text_encoder or "minilm"]


def test_switching_the_strategy_mid_project_runs_the_next_round_fresh(tmp_path, ls, caplog):
    text_project(ls, 7, labeled=14, unlabeled=30)
    run(make_backend(make_settings(tmp_path, AUTOAL_STRATEGY="albl"), ls), 7)
    assert backend_selector(tmp_path)["selector"] == "albl"
    for strategy in ("autoal", "tailor", "margin", "albl"):
        ls.annotate(7, 700 + 14 + len(strategy), ["pos"])
        with caplog.at_level("INFO", logger="autoal_backend.rounds.runner"):
            run(make_backend(make_settings(tmp_path, AUTOAL_STRATEGY=strategy), ls), 7)
        assert backend_selector(tmp_path)["selector"] == strategy
        fresh = [r for r in caplog.records if "starts fresh" in r.getMessage()]
        assert len(fresh) == 1 and "written by selector" in fresh[0].getMessage()
        caplog.clear()
    history = make_backend(make_settings(tmp_path), ls).store.load_history(7)
    assert [h["strategy"] for h in history] == ["albl", "autoal", "tailor", "margin", "albl"]


def backend_selector(tmp_path) -> dict:
    return torch.load(tmp_path / "models" / "7" / "selector.pt", weights_only=False)


def test_embedding_progress_moves_within_a_small_text_job(tmp_path, ls):
    from autoal_backend.rounds.embed import ENCODE_BATCH, chunk_size

    assert chunk_size("text", 300) == ENCODE_BATCH  # five steps, not one call of 300
    assert chunk_size("text", 100_000) == 1024  # a big job keeps the long length-sorted calls
    assert chunk_size("image", 100_000) == ENCODE_BATCH
    assert chunk_size("text", 5) == ENCODE_BATCH
    text_project(ls, 7, labeled=12, unlabeled=188)
    encoder = FakeEncoder()
    backend = make_backend(make_settings(tmp_path), ls, encoder)
    seen = []
    publish = backend.runner.set_stage

    def spy(project_id, stage, **details):
        if stage == "embedding":
            seen.append(details["done"])
        publish(project_id, stage, **details)

    backend.runner.set_stage = spy
    run(backend, 7)
    assert encoder.calls == [64, 64, 64, 8]
    assert seen == [0, 64, 128, 192, 200]


def test_an_auto_window_follows_the_labels_that_arrive_between_rounds(tmp_path, ls):
    from autoal_backend.rounds.rank import auto_window

    assert auto_window([], 12) == 100  # nothing seen yet: the largest window
    # The last five rounds and this one: steps 2, 26, 7, 13, 5 (the 12 of the first is too old).
    assert auto_window([{"labeled": n} for n in (0, 12, 14, 40, 47, 60)], 65) == 26
    assert auto_window([{"labeled": n} for n in (0, 1, 2)], 3) == 10  # never below ten
    assert auto_window([{"labeled": 0}], 500) == 100
    assert auto_window([{"labeled": 5}], 5) == 100  # no labels between rounds: no evidence
    text_project(ls, 7, labeled=12, unlabeled=60)
    backend = make_backend(make_settings(tmp_path, AUTOAL_PUSH_WINDOW="auto"), ls)
    run(backend, 7)
    assert backend.store.load_history(7)[-1]["push_window"] == 100
    for task in range(712, 726):
        ls.annotate(7, task, ["pos"])
    run(backend, 7)
    entry = backend.store.load_history(7)[-1]
    assert entry["push_window"] == 14 and entry["pushed"] == 14
    assert len(ls.versions(7)) == 1 and list(ls.versions(7).values()) == [14]


def test_tasks_served_at_random_until_the_accuracy_figure_is_trusted(tmp_path, ls):
    """A cold-start queue serves every other task at random; once ten of them are labeled the
    round's figure (the model's accuracy on the unlabeled tasks) is trusted, the page, the
    API and /metrics show it, and the next queue serves one task in ten at random."""
    text_project(ls, 7, labeled=2, unlabeled=120)
    settings = make_settings(
        tmp_path, AUTOAL_AUDIT_FRACTION="0.1", AUTOAL_AUDIT_UNTIL_TRUSTED="0.5"
    )
    backend = make_backend(settings, ls)
    run(backend, 7)
    first = backend.store.load_history(7)[-1]
    assert first["cold_start"] and first["audit_share"] == 0.5
    assert first["accuracy"]["trusted"] is False and first["accuracy"]["code"] == "no_model"
    ranking = backend.ranking(7)
    order = sorted(ranking.scores, key=ranking.scores.get)
    assert len(ranking.audit) == 60 and set(order[1::2]) == ranking.audit  # every 2nd position
    overview = backend_overview(backend, 7)
    assert overview["value"] is None and overview["code"] == "no_model"

    # Annotators label the first 24 of the queue, 12 of them served at random.
    for task_id in order[:24]:
        text = next(t for t in ls.tasks[7] if t["id"] == task_id)["data"]["text"]
        ls.annotate(7, task_id, ["pos" if "a" in text else "neg"])
    run(backend, 7)
    second = backend.store.load_history(7)[-1]
    assert second["audits"] == {"round": 1, "pool": 120, "tasks": sorted(order[1:24:2])}
    figure = second["accuracy"]
    assert figure["audited"] == 12 and figure["labeled"] == 26
    assert figure["trusted"] is True, figure
    estimate = figure["estimate"]
    assert estimate["low"] <= estimate["value"] <= estimate["high"] and estimate["value"] > 0.9
    assert estimate["high"] - estimate["low"] <= 0.2
    truth = sum(
        ranking_guess == ("pos" if "a" in t["data"]["text"] else "neg")
        for t in ls.tasks[7]
        if not t["annotations"]
        for ranking_guess in backend.ranking(7).choices[t["id"]]
    ) / sum(not t["annotations"] for t in ls.tasks[7])
    assert estimate["low"] <= truth <= estimate["high"]
    # Round 2's queue was sized by round 1's verdict (no figure): every other task at random,
    # and the annotators are told so.
    assert second["audit_share"] == 0.5
    reasons = {p["task"]: p["result"][0]["meta"]["text"][0] for p in ls.predictions}
    second_order = sorted(backend.ranking(7).scores, key=backend.ranking(7).scores.get)
    assert "served at random to measure accuracy" in reasons[second_order[1]]
    assert "served at random" not in reasons[second_order[0]]
    headline = backend_overview(backend, 7)
    assert headline["value"] == estimate["value"] and headline["audited"] == 12
    assert headline["text"].startswith("The model's guesses are right on about")
    metrics = backend.metrics_text()
    assert f'autoal_accuracy_unlabeled{{project="7"}} {estimate["value"]:.4f}' in metrics
    assert "autoal_accuracy_unlabeled_withheld{" not in metrics

    ls.annotate(7, order[24], ["pos"])
    run(backend, 7)
    assert backend.store.load_history(7)[-1]["audit_share"] == 0.1
    assert len(backend.ranking(7).audit) == len(backend.ranking(7).scores) // 10


def backend_overview(backend, project_id):
    from autoal_backend.overview import project_row

    return project_row(backend, project_id)["accuracy"]


def test_projects_without_a_measured_figure_serve_nothing_at_random_and_say_why(tmp_path):
    from types import SimpleNamespace

    from autoal_backend.rounds.history import NOT_MEASURED, accuracy_headline, round_audit_share

    settings = make_settings(
        tmp_path, AUTOAL_AUDIT_FRACTION="0.1", AUTOAL_AUDIT_UNTIL_TRUSTED="0.5"
    )
    assert round_audit_share([], settings, SimpleNamespace(kind="spans")) == 0.0
    assert round_audit_share([], settings, SimpleNamespace(kind="choices")) == 0.5
    trusted = [{"accuracy": {"trusted": True}}]
    assert round_audit_share(trusted, settings, SimpleNamespace(kind="choices")) == 0.1

    history = [{"round": 3, "model_version": "v", "accuracy": {"estimate": None, "trusted": False,
                "reason": NOT_MEASURED, "code": "not_measured", "audited": 0, "labeled": 9}}]  # fmt: skip
    headline = accuracy_headline(history)
    assert headline["value"] is None and headline["code"] == "not_measured"
    assert headline["reason"] == NOT_MEASURED
    assert accuracy_headline([])["code"] == "no_round"
    assert accuracy_headline([{"round": 1}])["code"] == "no_figure"
