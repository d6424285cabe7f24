"""The strategy portfolio: one contract every registered strategy passes, then known answers
on tiny hand-made pools."""

from dataclasses import replace

import pytest
import torch
from pool_helpers import make_blobs

from model.errors import EmptyPoolError, UnknownNameError
from model.pool import PoolState, make_pool
from model.strategies import PORTFOLIO, get_strategy, score, score_matrix, shortlist, strategy_names
from model.strategies.badge import badge_picks, gradient_factors
from model.strategies.bayesian import bald_from_mc, mean_std_from_mc
from model.strategies.common import nearest_centre, picks_on_top, weighted_draw
from model.strategies.uncertainty import uncertainty_scores
from model.task_model import TaskModel, TaskModelConfig

ALL = strategy_names()
MODEL_BASED = [n for n in ALL if get_strategy(n).needs_model]


def test_registry_holds_the_whole_portfolio():
    # The portfolio first; outside it, the low-budget picks measured against it.
    assert ALL[: len(PORTFOLIO)] == list(PORTFOLIO) and ALL[len(PORTFOLIO) :] == [
        "probcover",
        "typiclust",
    ]
    assert {n for n in ALL if not get_strategy(n).needs_model} == {
        "random",
        "kmeans",
        "coreset",
        "probcover",
        "typiclust",
    }


def test_unknown_strategy_lists_the_valid_names(trained_pool):
    with pytest.raises(UnknownNameError, match="valid: .*badge"):
        score(trained_pool, "typo", trained_pool.unlabeled_indices())


@pytest.mark.parametrize("name", ALL)
class TestStrategyContract:
    """What every registered strategy promises, whatever it computes."""

    def test_shape_finite_and_unit_interval(self, name, trained_pool):
        candidates = trained_pool.unlabeled_indices()
        raw = get_strategy(name).fn(trained_pool, candidates)
        assert raw.shape == candidates.shape
        assert torch.isfinite(raw).all()
        scores = score(trained_pool, name, candidates)
        assert scores.shape == candidates.shape
        assert float(scores.min()) == 0.0 and float(scores.max()) == 1.0

    def test_same_seed_same_scores(self, name, trained_pool):
        candidates = trained_pool.unlabeled_indices()
        first = get_strategy(name).fn(trained_pool, candidates)
        # A fresh cache: the rerun must recompute, not read back the first run's result.
        again = get_strategy(name).fn(replace(trained_pool, cache={}), candidates.clone())
        assert torch.equal(first, again)

    def test_invariant_to_candidate_order(self, name, trained_pool):
        candidates = trained_pool.unlabeled_indices()
        permutation = torch.randperm(candidates.numel(), generator=torch.Generator().manual_seed(7))
        raw = get_strategy(name).fn(trained_pool, candidates)
        raw_permuted = get_strategy(name).fn(trained_pool, candidates[permutation])
        assert torch.equal(raw_permuted, raw[permutation])

    def test_single_candidate(self, name, trained_pool):
        one = trained_pool.unlabeled_indices()[:1]
        assert score(trained_pool, name, one).tolist() == [1.0]

    def test_budget_larger_than_candidates_is_clamped(self, name, trained_pool):
        candidates = trained_pool.unlabeled_indices()[:4]
        scores = score(replace(trained_pool, budget=50), name, candidates)
        assert sorted(scores.tolist()) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])

    def test_multilabel_pool(self, name, multilabel_pool):
        candidates = multilabel_pool.unlabeled_indices()
        raw = get_strategy(name).fn(multilabel_pool, candidates)
        assert raw.shape == candidates.shape and torch.isfinite(raw).all()
        if name != "random":
            # Multi-label items still get distinct informativeness, not one constant.
            assert raw.unique().numel() > 1

    def test_empty_candidates_rejected(self, name, trained_pool):
        empty = torch.zeros(0, dtype=torch.long)
        with pytest.raises(EmptyPoolError):
            score(trained_pool, name, empty)
        with pytest.raises(EmptyPoolError):
            get_strategy(name).fn(trained_pool, empty)


@pytest.mark.parametrize("name", MODEL_BASED)
def test_model_based_strategies_need_a_model(name, trained_pool):
    untrained = replace(trained_pool, probs=None, model=None)
    with pytest.raises(EmptyPoolError, match="model"):
        score(untrained, name, untrained.unlabeled_indices())


@pytest.mark.parametrize("name", ["random", "kmeans", "coreset"])
def test_model_free_strategies_work_with_zero_labels(name, blobs):
    features, _ = blobs
    state = make_pool(features, torch.full((features.shape[0],), -1), 4, budget=4)
    scores = score(state, name, state.unlabeled_indices())
    assert scores.shape == (features.shape[0],)


@pytest.mark.parametrize("name", ["random", "kmeans", "coreset", "badge", "bald"])
def test_seed_changes_the_random_choices(name, trained_pool):
    candidates = trained_pool.unlabeled_indices()
    # Zero labels for coreset so that its first centre is the seeded random draw.
    state = (
        trained_pool
        if name != "coreset"
        else replace(trained_pool, labeled=torch.zeros_like(trained_pool.labeled))
    )
    seeds = [get_strategy(name).fn(replace(state, seed=s), candidates) for s in range(4)]
    assert any(not torch.equal(seeds[0], other) for other in seeds[1:])


def test_score_matrix_stacks_one_column_per_strategy(trained_pool):
    candidates = trained_pool.unlabeled_indices()
    matrix = score_matrix(trained_pool, ALL, candidates)
    assert matrix.shape == (candidates.numel(), len(ALL))
    assert torch.equal(matrix[:, ALL.index("entropy")], score(trained_pool, "entropy", candidates))


# --- uncertainty -----------------------------------------------------------------------


def test_entropy_ranks_a_coin_flip_above_a_confident_item():
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    entropy = uncertainty_scores(probs, "entropy")
    assert entropy[1] > entropy[0]
    assert float(entropy[1]) == pytest.approx(float(torch.log(torch.tensor(2.0))))


def test_margin_and_least_confidence_disagree_on_three_classes():
    # Item 0: top two nearly tied (small margin) but a confident-looking top class.
    # Item 1: a flat top (low confidence) but a clear gap to the runner-up.
    probs = torch.tensor([[0.50, 0.45, 0.05], [0.40, 0.30, 0.30]])
    least_confidence = uncertainty_scores(probs, "least_confidence")
    margin = uncertainty_scores(probs, "margin")
    assert least_confidence.tolist() == pytest.approx([0.5, 0.6])
    assert margin.tolist() == pytest.approx([0.95, 0.9])
    assert least_confidence.argmax() == 1 and margin.argmax() == 0


def test_multilabel_uncertainty_averages_over_labels():
    # One undecided label out of two counts half as much as two undecided labels.
    probs = torch.tensor([[0.5, 1.0], [0.5, 0.5], [1.0, 0.0]])
    least_confidence = uncertainty_scores(probs, "least_confidence", multilabel=True)
    assert least_confidence.tolist() == pytest.approx([0.25, 0.5, 0.0])


def test_unknown_uncertainty_method_is_rejected():
    with pytest.raises(ValueError, match="got 'ratio'"):
        uncertainty_scores(torch.tensor([[0.5, 0.5]]), "ratio")


# --- BALD and mean-STD -----------------------------------------------------------------


def disagreeing_and_agreeing_passes() -> torch.Tensor:
    """[3, 4, 2] MC probabilities: item 0's passes each confident but disagreeing, item 1's
    confidently agreeing, item 2's agreeing on a coin flip (high entropy, no disagreement)."""
    disagree = torch.tensor([[0.99, 0.01], [0.01, 0.99]] * 2)
    agree = torch.tensor([[0.95, 0.05]] * 4)
    flat = torch.tensor([[0.5, 0.5]] * 4)
    return torch.stack([disagree, agree, flat])


def test_bald_ranks_disagreeing_passes_above_agreement():
    bald = bald_from_mc(disagreeing_and_agreeing_passes())
    assert bald[0] > bald[1] and bald[0] > bald[2]
    # Agreeing passes carry no information about the weights, whatever their entropy.
    assert bald[1:].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_mean_std_known_values():
    mean_std = mean_std_from_mc(disagreeing_and_agreeing_passes())
    assert mean_std.tolist() == pytest.approx([0.49, 0.0, 0.0], abs=1e-6)


def test_bald_multilabel_sums_over_labels():
    one_label = torch.tensor([[[0.99]], [[0.01]]]).reshape(1, 2, 1)  # [1, T=2, C=1]
    two_labels = one_label.repeat(1, 1, 2)  # the same disagreement on two labels
    assert float(bald_from_mc(two_labels, multilabel=True)) == pytest.approx(
        2 * float(bald_from_mc(one_label, multilabel=True))
    )


class FixedPasses:
    """A stand-in task model whose MC passes are fixed per item; features[:, 0] holds the
    item's row in ``passes``. Lets the registered strategy be checked end to end."""

    def __init__(self, passes: torch.Tensor) -> None:
        self.passes = passes

    def mc_probabilities(self, features: torch.Tensor, passes: int = 20, seed: int = 0):
        return self.passes[features[:, 0].long()]


def test_registered_bald_uses_the_models_passes():
    mc = disagreeing_and_agreeing_passes()
    features = torch.arange(3, dtype=torch.float32)[:, None]
    state = replace(
        make_pool(features, torch.full((3,), -1), 2),
        probs=mc.mean(dim=1),
        model=FixedPasses(mc),
    )
    candidates = torch.tensor([2, 1, 0])
    assert score(state, "bald", candidates)[2] == 1.0
    assert score(state, "mean_std", candidates)[2] == 1.0


def test_registered_bald_reduces_the_task_models_own_passes(trained_pool):
    candidates = trained_pool.unlabeled_indices()
    passes = trained_pool.model.mc_probabilities(
        trained_pool.features[candidates], passes=20, seed=trained_pool.seed
    )
    expected = bald_from_mc(passes)
    torch.testing.assert_close(get_strategy("bald").fn(trained_pool, candidates), expected)
    assert float(expected.max()) > 0.0


def test_mc_scores_are_shared_by_bald_and_mean_std_but_never_stale(trained_pool):
    state = replace(trained_pool, cache={})
    candidates = state.unlabeled_indices()
    calls = []

    class CountingModel:
        def __init__(self, model):
            self.model = model

        def mc_probabilities(self, features, passes=20, seed=0):
            calls.append(features.shape[0])
            return self.model.mc_probabilities(features, passes=passes, seed=seed)

    state = replace(state, model=CountingModel(trained_pool.model))
    bald = get_strategy("bald").fn(state, candidates)
    get_strategy("mean_std").fn(state, candidates)
    assert len(calls) == 1  # one set of passes serves both
    # Another seed, other candidates or another model must not reuse those passes.
    reseeded = get_strategy("bald").fn(replace(state, seed=state.seed + 1), candidates)
    assert not torch.equal(reseeded, bald)
    subset = get_strategy("bald").fn(state, candidates[:7])
    torch.testing.assert_close(subset, bald[:7])
    other = TaskModel.fit(
        state.features[state.labeled], state.targets[state.labeled], config=TaskModelConfig(steps=3)
    )
    fresh = get_strategy("bald").fn(replace(state, model=other, cache={}), candidates)
    assert torch.equal(get_strategy("bald").fn(replace(state, model=other), candidates), fresh)
    assert len(calls) == 3


def test_bald_is_zero_without_dropout(trained_pool):
    # No dropout, no disagreement between passes: nothing to learn about the weights.
    labeled = trained_pool.labeled_indices()
    model = TaskModel.fit(
        trained_pool.features[labeled],
        trained_pool.targets[labeled],
        config=TaskModelConfig(dropout=0.0, steps=50),
    )
    state = replace(trained_pool, model=model, probs=model.predict_proba(trained_pool.features))
    candidates = state.unlabeled_indices()
    assert float(get_strategy("bald").fn(state, candidates).abs().max()) < 1e-6
    assert float(get_strategy("mean_std").fn(state, candidates).abs().max()) < 1e-6


# --- k-means ---------------------------------------------------------------------------


def test_only_the_pool_passing_strategies_are_sequential():
    sequential = {"kmeans", "coreset", "badge", "probcover", "typiclust"}
    assert {n for n in ALL if get_strategy(n).sequential} == sequential


def test_shortlist_is_a_seeded_subset_of_the_candidate_set_whatever_their_order():
    candidates = torch.arange(100, 400)
    keep = shortlist(candidates, 50, seed=4)
    assert keep.numel() == 50 == torch.unique(keep).numel()
    assert torch.equal(keep, shortlist(candidates, 50, seed=4))
    assert not torch.equal(keep, shortlist(candidates, 50, seed=5))
    reversed_positions = shortlist(candidates.flip(0), 50, seed=4)
    assert set(candidates.flip(0)[reversed_positions].tolist()) == set(candidates[keep].tolist())


@pytest.mark.parametrize("name", ["kmeans", "coreset", "badge"])
def test_a_shortlisted_strategy_scores_its_subset_above_the_rest(name, trained_pool):
    candidates = trained_pool.unlabeled_indices()
    cap = candidates.numel() // 3
    state = replace(trained_pool, shortlist=cap, cache={})
    scores = score(state, name, candidates)
    keep = shortlist(candidates, cap, trained_pool.seed)
    inside = torch.zeros(candidates.numel(), dtype=torch.bool)
    inside[keep] = True
    assert float(scores[inside].min()) > float(scores[~inside].max())
    assert float(scores.max()) == 1.0 and float(scores.min()) == 0.0
    # Inside, the order is the strategy's own on the subset alone.
    alone = score(replace(trained_pool, cache={}), name, candidates[keep])
    assert torch.equal(
        torch.argsort(scores[keep], descending=True), torch.argsort(alone, descending=True)
    )


def test_shortlist_leaves_cheap_strategies_and_small_pools_alone(trained_pool):
    candidates = trained_pool.unlabeled_indices()
    small = replace(trained_pool, shortlist=5, cache={})
    assert torch.equal(
        score(small, "margin", candidates), score(trained_pool, "margin", candidates)
    )
    roomy = replace(trained_pool, shortlist=candidates.numel(), cache={})
    assert torch.equal(
        score(roomy, "kmeans", candidates), score(trained_pool, "kmeans", candidates)
    )


def test_kmeans_picks_one_point_per_well_separated_blob():
    features, blob = make_blobs([25, 25, 25, 25], seed=1)
    state = make_pool(features, torch.full((100,), -1), 4, budget=4)
    for seed in range(5):
        top = torch.topk(score(replace(state, seed=seed), "kmeans", torch.arange(100)), 4).indices
        assert sorted(blob[top].tolist()) == [0, 1, 2, 3]


def test_kmeans_representative_is_the_point_at_the_centroid_largest_cluster_first():
    # Blob b: a centre point plus symmetric offsets, so its mean is exactly the centre point.
    offsets = torch.cat([torch.eye(3), -torch.eye(3)])
    centres = torch.tensor([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 20.0, 0.0]])
    copies = [1, 3, 2]  # blob 1 holds the most points
    rows = [
        torch.cat([c[None], (c + offsets).repeat(k, 1)])
        for c, k in zip(centres, copies, strict=True)
    ]
    features = torch.cat(rows)
    starts = [0, rows[0].shape[0], rows[0].shape[0] + rows[1].shape[0]]
    state = make_pool(features, torch.full((features.shape[0],), -1), 3, budget=3)
    raw = get_strategy("kmeans").fn(state, torch.arange(features.shape[0]))
    top = torch.topk(raw, 3).indices.tolist()
    assert top == [starts[1], starts[2], starts[0]]


def test_kmeans_with_duplicates_fewer_distinct_points_than_clusters():
    features = torch.tensor([[0.0, 0.0]] * 5 + [[5.0, 5.0]] * 5)
    state = make_pool(features, torch.full((10,), -1), 2, budget=4)
    scores = score(state, "kmeans", torch.arange(10))
    top2 = torch.topk(scores, 2).indices
    assert {int(i) // 5 for i in top2} == {0, 1}


# --- core-set --------------------------------------------------------------------------


def test_coreset_picks_the_far_away_cluster_first():
    features, blob = make_blobs([30, 30, 5], seed=2)
    features[blob == 2] += 40.0  # a small cluster far from everything labeled
    # Every other item of the two near blobs is labeled; the rest of them stay candidates.
    labels = torch.where((blob < 2) & (torch.arange(65) % 2 == 0), blob, -1)
    state = make_pool(features, labels, 3, budget=2)
    candidates = state.unlabeled_indices()
    scores = score(state, "coreset", candidates)
    assert blob[candidates[scores.argmax()]] == 2


def test_coreset_without_labels_covers_every_blob():
    features, blob = make_blobs([20, 20, 20], seed=3)
    state = make_pool(features, torch.full((60,), -1), 3, budget=3)
    for seed in range(5):
        top = torch.topk(score(replace(state, seed=seed), "coreset", torch.arange(60)), 3).indices
        assert sorted(blob[top].tolist()) == [0, 1, 2]


def test_coreset_ignores_candidates_own_labels_as_centres():
    # Cross-fitting scores a held-out fold of labeled items: they must not cover themselves.
    features, _ = make_blobs([10, 10], seed=4)
    state = make_pool(features, torch.zeros(20, dtype=torch.long), 2, budget=2)
    raw = get_strategy("coreset").fn(state, torch.arange(10))
    assert (raw > 0).all()


# --- BADGE -----------------------------------------------------------------------------


def uncertain_blob_pool(seed: int) -> tuple[PoolState, torch.Tensor]:
    """Three tight blobs of uncertain items (sizes 40, 5, 5: counts alone would favour the
    first) with three different undecided class pairs, scored by a linear model (whose
    ``embed`` is the identity)."""
    features, blob = make_blobs([40, 5, 5], spread=0.05, distance=10.0, seed=seed)
    pairs = torch.tensor([[0, 1], [1, 2], [2, 3]])
    probs = torch.full((50, 4), 0.02)
    probs[torch.arange(50)[:, None], pairs[blob]] = torch.tensor([0.49, 0.47])
    linear = TaskModel.fit(features[:4], torch.eye(4), config=TaskModelConfig(steps=1))
    state = replace(
        make_pool(features, torch.full((50,), -1), 4, budget=3, seed=seed),
        probs=probs,
        model=linear,
    )
    return state, blob


def test_badge_top_b_covers_distinct_uncertain_blobs():
    for seed in range(5):
        state, blob = uncertain_blob_pool(seed)
        top = torch.topk(score(state, "badge", torch.arange(50)), 3).indices
        assert sorted(blob[top].tolist()) == [0, 1, 2]


def test_badge_factorised_distances_match_explicit_gradient_embeddings():
    rng = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(12, 3, generator=rng), dim=1)
    h = torch.randn(12, 5, generator=rng)
    a = gradient_factors(probs)
    picks, min_d2 = badge_picks(a, h, 4, torch.Generator().manual_seed(1))
    explicit = (a[:, :, None] * h[:, None, :]).reshape(12, -1)  # [M, C*h], fine at M=12
    expected = torch.cdist(explicit, explicit[picks]).min(dim=1).values ** 2
    assert len(set(picks)) == 4
    assert int(torch.argmax(explicit.norm(dim=1))) == picks[0]
    torch.testing.assert_close(min_d2, expected, atol=1e-4, rtol=1e-4)


def test_badge_gradient_factors():
    single = gradient_factors(torch.tensor([[0.7, 0.2, 0.1]]))
    torch.testing.assert_close(single, torch.tensor([[-0.3, 0.2, 0.1]]))
    multi = gradient_factors(torch.tensor([[0.7, 0.2]]), multilabel=True)
    torch.testing.assert_close(multi, torch.tensor([[-0.3, 0.2]]))


def test_badge_confident_pool_falls_back_to_uniform_draws():
    # Every gradient is zero: no D^2 mass, yet B distinct picks must come out.
    a = torch.zeros(6, 2)
    h = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    picks, min_d2 = badge_picks(a, h, 4, torch.Generator().manual_seed(0))
    assert len(set(picks)) == 4 and (min_d2 == 0).all()


# --- shared building blocks ------------------------------------------------------------


def test_nearest_centre_matches_cdist_across_blocks(monkeypatch):
    import model.strategies.common as common

    monkeypatch.setattr(common, "BLOCK_ELEMENTS", 7)  # force many row and centre blocks
    monkeypatch.setattr(common, "CENTRE_BLOCK", 3)
    rng = torch.Generator().manual_seed(0)
    x, centres = torch.randn(20, 4, generator=rng), torch.randn(8, 4, generator=rng)
    d2, index = nearest_centre(x, centres)
    expected = torch.cdist(x, centres)
    torch.testing.assert_close(d2, expected.min(dim=1).values ** 2, atol=1e-4, rtol=1e-4)
    assert torch.equal(index, expected.argmin(dim=1))


def test_weighted_draw_never_draws_a_zero_weight_and_is_seeded():
    weights = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0])
    draws = [weighted_draw(weights, torch.Generator().manual_seed(s)) for s in range(200)]
    assert set(draws) == {1, 3}
    assert 0.6 < draws.count(3) / 200 < 0.9
    assert weighted_draw(torch.zeros(3), torch.Generator()) is None


def test_picks_on_top_reproduces_the_pick_order():
    rest = torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0])
    scores = picks_on_top(rest, [3, 1])
    assert torch.argsort(scores, descending=True).tolist() == [3, 1, 0, 4, 2]


# --- CUDA ------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(name, trained_pool):
    cuda = torch.device("cuda")
    state = replace(
        trained_pool,
        features=trained_pool.features.to(cuda),
        targets=trained_pool.targets.to(cuda),
        labeled=trained_pool.labeled.to(cuda),
        labeled_round=trained_pool.labeled_round.to(cuda),
        probs=trained_pool.probs.to(cuda),
        model=TaskModel.from_state_dict(trained_pool.model.state_dict(), device=cuda),
    )
    candidates = trained_pool.unlabeled_indices()
    on_cpu = get_strategy(name).fn(trained_pool, candidates)
    on_cuda = get_strategy(name).fn(state, candidates.to(cuda))
    assert on_cuda.device.type == "cuda"
    # Same seeded choices on both devices; only float rounding may differ.
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=1e-4, rtol=1e-4)


def test_resolve_portfolio_defaults_checks_names_and_rejects_empty():
    from model.strategies import resolve_portfolio

    assert resolve_portfolio(None, "uniform") == [n for n in PORTFOLIO if n in strategy_names()]
    assert resolve_portfolio(("margin", "badge"), "AutoAL") == ["margin", "badge"]
    with pytest.raises(UnknownNameError, match="'margn'.*valid: .*margin"):
        resolve_portfolio(["margn"], "AutoAL")
    with pytest.raises(ValueError, match="ALBL portfolio is empty"):
        resolve_portfolio([], "ALBL")
