"""The selector registry, the budget schedule and TAILOR: every registered selector honours the
selection contract; the baselines do what their rule says on pools with a known answer."""

import json

import pytest
import torch
from pool_helpers import train

from model.errors import UnknownNameError
from model.pool import make_pool
from model.selectors import (
    make_selector,
    mixture_names,
    parse_option_value,
    parse_selector_options,
    restore_state,
    saved_state,
    selector_names,
    selector_options,
)
from model.selectors.tailor import TailorSelector, class_weights
from model.strategies import strategy_names

SMALL = ["random", "margin", "kmeans"]


def pool(labels_per_class: int, classes: int = 4, per_class: int = 40, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, 6, generator=gen) * 3
    x = torch.cat([centres[c] + torch.randn(per_class, 6, generator=gen) for c in range(classes)])
    y = torch.arange(classes).repeat_interleave(per_class)
    labels = torch.full_like(y, -1)
    for c in range(classes):
        labels[c * per_class : c * per_class + labels_per_class] = c
    state = make_pool(x, labels, classes, budget=6, seed=seed)
    state.ids = torch.arange(x.shape[0]) + 1000
    return train(state), y


def test_registry_lists_mixtures_then_strategies_and_explains_bad_names():
    names = selector_names()
    assert names[:3] == ["autoal", "uniform", "albl"]
    assert {"autoal_online", "autoal_labels", "schedule", "tailor"} <= set(mixture_names())
    assert names[len(mixture_names()) :] == strategy_names()
    with pytest.raises(UnknownNameError, match="valid: .*tailor"):
        make_selector("bandit")
    with pytest.raises(UnknownNameError, match="option of selector 'schedule'.*labels_per_class"):
        make_selector("schedule", horizon=3)
    assert selector_options("margin") == {}


@pytest.mark.parametrize(
    "name", ["autoal", "uniform", "albl", "schedule", "tailor", "autoal_online", "autoal_labels"]
)
def test_every_mixture_honours_the_selection_contract(name):
    state, _ = pool(labels_per_class=5)
    candidates = state.unlabeled_indices()
    # The prior is trained for the whole portfolio; the others run on a small one.
    options = {} if name in ("schedule", "autoal", "autoal_online") else {"portfolio": SMALL}
    first = make_selector(name, **options).select(state, candidates)
    again = make_selector(name, **options).select(state, candidates)
    m = candidates.numel()
    assert first.priority.shape == (m,) and first.contributions.shape[0] == m
    assert float(first.priority.min()) >= 0.0 and float(first.priority.max()) <= 1.0 + 1e-6
    assert torch.equal(first.priority, again.priority)  # seeded
    json.dumps(first.info)  # the round history keeps it
    assert len(first.top_strategy()) == m


def test_schedule_switches_from_kmeans_to_margin_at_ten_labels_per_class():
    few, _ = pool(labels_per_class=3)
    many, _ = pool(labels_per_class=12)
    schedule = make_selector("schedule")
    assert schedule.select(few, few.unlabeled_indices()).info["phase"] == "kmeans"
    assert schedule.select(many, many.unlabeled_indices()).info["phase"] == "margin"
    assert make_selector("schedule", labels_per_class=20).phase(many) == 0


def test_tailor_class_weights_favour_rare_classes_and_penalise_a_dominant_one():
    weights = class_weights(torch.tensor([30.0, 5.0, 0.0, 15.0]), 50)
    assert weights.tolist() == pytest.approx([-1 / 30, 1 / 5, 1.0, 1 / 15])


def test_tailor_credits_the_arm_that_brings_rare_classes():
    state, truth = pool(labels_per_class=3, classes=4)
    # Class 3 is rare among the labels: its items are the ones an arm should be paid for.
    selector = TailorSelector(portfolio=SMALL, seed=1)
    for _ in range(3):
        candidates = state.unlabeled_indices()
        selection = selector.select(state, candidates)
        picked = selection.order(state.seed)[: state.budget]
        # The annotator labels the picks: only margin's picks are of the rare class 3.
        for position in picked.tolist():
            arm = selector.pending[int(state.ids[position])]
            label = 3 if SMALL[arm] == "margin" else 0
            state.labeled[position] = True
            state.targets[position] = torch.nn.functional.one_hot(torch.tensor(label), 4).float()
        state = train(state)
    selector.select(state, state.unlabeled_indices())
    stats = torch.tensor(selector.stats)
    share = stats[0, :, 3] / stats[0].sum(dim=1)  # each arm's posterior share of class 3
    assert share[SMALL.index("margin")] > share[SMALL.index("kmeans")], stats[0]
    restored = TailorSelector(portfolio=SMALL)
    assert restore_state(restored, json.loads(json.dumps(saved_state(selector)))) is None
    assert restored.stats == selector.stats and restored.pending == selector.pending


def test_option_values_parse_by_their_defaults_type():
    assert parse_option_value("3", 20) == 3
    assert parse_option_value("0.5", 10.0) == 0.5
    assert parse_option_value("off", True) is False
    assert parse_option_value("margin, kmeans", None) == ["margin", "kmeans"]
    assert parse_option_value("none", None) is None
    assert parse_option_value("/tmp/prior.json", "default") == "/tmp/prior.json"
    with pytest.raises(ValueError, match="expected true or false"):
        parse_option_value("maybe", True)
    assert parse_selector_options("albl", ["horizon=4", "autoal.online=false"]) == {"horizon": 4}


def test_every_module_of_the_selectors_package_is_found_and_registers_a_selector():
    import pkgutil

    import model.selectors as selectors

    names = selectors.mixture_names()
    owners = {selectors._REGISTRY[n].factory.__module__ for n in names}
    for module in pkgutil.iter_modules(selectors.__path__):
        prefix = f"model.selectors.{module.name}"
        assert any(owner == prefix or owner.startswith(prefix + ".") for owner in owners), prefix
    assert names[:3] == ["autoal", "uniform", "albl"]
