"""The speed benchmark: a tiny run gives the documented JSON (no timing is asserted), and its
helpers have known answers."""

import json

import pytest
import torch

from benchmarks import speed
from model import strategies
from model.pool import PoolState


def run_main(capsys, *args: str) -> dict:
    assert speed.main(list(args)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1])  # the LAST line is the JSON report


def test_tiny_run_reports_every_stage_and_the_encoder_comparison(capsys, tmp_path):
    plot = tmp_path / "round_time.png"
    report = run_main(
        capsys,
        "--pool", "40,80", "--dim", "8", "--classes", "3", "--labeled", "30", "--budget", "5",
        "--repeats", "2", "--encoders", "pixels", "--images", "12", "--encoder-repeats", "1",
        "--device", "cpu", "--in-process", "--task-steps", "20", "--plot", str(plot),
        "--selector", "autoal_online",
    )  # fmt: skip
    assert set(report["pools"]) == {"40", "80"}
    for pool, entry in report["pools"].items():
        assert entry["unlabeled"] == int(pool) and entry["items"] == int(pool) + 30
        assert entry["round_seconds"] > 0 and entry["peak_memory_mb"] > 0
        assert len(entry["round_seconds_all"]) == 2
        # The median of two repeats is their mean.
        assert entry["round_seconds"] == pytest.approx(
            sum(entry["round_seconds_all"]) / 2, abs=1e-3
        )
        stages = entry["stages"]
        for stage in (
            "standardise",
            "train",
            "autoal.cross_fit",
            "autoal.search",
            "autoal.portfolio",
            "autoal.weigh",
            "validate",
            "ranking",
        ):
            assert stages[stage] >= 0, stage
        # Every portfolio member ran on the round's pool and in the cross-fitting folds.
        for name in strategies.PORTFOLIO:
            assert f"strategy:{name}" in stages and f"cross_fit:{name}" in stages
        # The strategies' time is part of the portfolio call that ran them.
        inside = sum(v for k, v in stages.items() if k.startswith("strategy:"))
        assert inside <= stages["autoal.portfolio"] + 1e-3
    pixels = report["encoders"]["pixels"]
    assert pixels["items"] == 12 and pixels["modality"] == "image"
    assert pixels["raw_items_per_s"] > 0 and pixels["path_items_per_s"] > 0
    assert pixels["path_to_raw"] == pytest.approx(
        pixels["path_items_per_s"] / pixels["raw_items_per_s"], rel=0.01, abs=1e-3
    )
    assert report["config"]["labeled"] == 30 and report["environment"]["device"] == "cpu"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_default_round_times_the_prior(capsys):
    report = run_main(capsys, "--pool", "40", "--labeled", "30", "--repeats", "1", "--encoders", "none",
                      "--device", "cpu", "--in-process", "--task-steps", "20")  # fmt: skip
    stages = report["pools"]["40"]["stages"]
    assert stages["autoal.prior"] > 0 and "autoal.cross_fit" not in stages
    assert report["config"]["selector"] == "autoal"


def test_pool_none_skips_the_rounds(capsys):
    report = run_main(capsys, "--pool", "none", "--encoders", "none")
    assert report["pools"] == {} and report["encoders"] == {}
    assert report["scaling_exponent"] is None


def test_scaling_exponent_of_a_linear_and_a_quadratic_cost():
    linear = {str(n): {"items": n, "round_seconds": n / 1000} for n in (1000, 10000, 100000)}
    assert speed.scaling_exponent(linear) == pytest.approx(1.0, abs=1e-3)
    square = {str(n): {"items": n, "round_seconds": (n / 1000) ** 2} for n in (1000, 10000)}
    assert speed.scaling_exponent(square) == pytest.approx(2.0, abs=1e-3)


def test_synthetic_embeddings_are_seeded_and_shaped():
    a, labels = speed.synthetic_embeddings(50, 64, 3, seed=1, device=torch.device("cpu"))
    b, again = speed.synthetic_embeddings(50, 64, 3, seed=1, device=torch.device("cpu"))
    c, _ = speed.synthetic_embeddings(50, 64, 3, seed=2, device=torch.device("cpu"))
    assert a.shape == (50, 64) and labels.shape == (50,) and int(labels.max()) < 3
    assert torch.equal(a, b) and torch.equal(labels, again)
    assert not torch.equal(a, c)
    # One component per class: items sit nearer their own class mean than any other's.
    means = torch.stack([a[labels == k].mean(dim=0) for k in range(3)])
    assert (torch.cdist(a, means).argmin(dim=1) == labels).float().mean() > 0.9


def test_strategy_timer_charges_pool_and_sub_pool_calls_apart_and_restores_the_registry():
    original = strategies.get_strategy("random").fn
    pool = PoolState(
        features=torch.zeros(10, 2), targets=torch.zeros(10, 2),
        labeled=torch.zeros(10, dtype=torch.bool), labeled_round=torch.full((10,), -1),
    )  # fmt: skip
    sub = PoolState(
        features=torch.zeros(4, 2), targets=torch.zeros(4, 2),
        labeled=torch.zeros(4, dtype=torch.bool), labeled_round=torch.full((4,), -1),
    )  # fmt: skip
    with speed.StrategyTimer(pool.features, torch.device("cpu")) as timer:
        assert strategies.get_strategy("random").fn is not original
        strategies.score(pool, "random", torch.arange(10))
        strategies.score(sub, "random", torch.arange(4))
    assert set(timer.seconds) == {"strategy:random", "cross_fit:random"}
    assert strategies.get_strategy("random").fn is original


def test_a_span_round_reports_the_span_portfolio_and_ranking(capsys):
    assert speed.main(["--kind", "spans", "--pool", "60", "--labeled", "20", "--classes", "3", "--budget", "10",
                       "--repeats", "1", "--encoders", "none", "--in-process", "--task-steps", "20"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stages = report["pools"]["60"]["stages"]
    assert report["config"]["kind"] == "spans"
    assert {
        "strategy:mnlp",
        "strategy:token_bald",
        "strategy:span_badge",
        "ranking",
        "train",
    } <= set(stages)


def test_synthetic_span_texts_carry_offsets_that_index_their_words():
    states, offsets, texts, answers = speed.synthetic_span_texts(6, 8, 2, 4, seed=0)
    for text, chars, rows in zip(texts, offsets, states, strict=True):
        assert [text[a:b] for a, b in chars] == text.split() and rows.shape == (len(chars), 8)
    assert answers[4:] == [None, None] and all(isinstance(a, list) for a in answers[:4])
