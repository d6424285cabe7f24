"""AutoAL's online search (the published design, ``autoal_labels``): the relaxation has real
gradients, the search finds the informative strategy, the selector is reproducible,
warm-started and restorable. Tiny synthetic data, known answers."""

import json

import pytest
import torch

from model.errors import UnknownNameError
from model.pool import make_pool
from model.selectors import make_selector, restore_state, saved_state
from model.selectors.autoal import (
    AutoALConfig,
    AutoALSelector,
    LabelOnlyAutoAL,
    SearchNet,
    cross_fit,
    fit_search_net,
    leave_one_out_influence,
    normalise_signal,
    search_objective,
    soft_top_fraction,
    strategy_rewards,
    validated_shrinkage,
)
from model.task_model import TaskModel, TaskModelConfig

FAST_TASK = TaskModelConfig(steps=100)


def synthetic_search(
    n: int = 300, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [n, 4], A [n, 3], loss [n]: strategy 0 ranks the loss, strategy 1 ranks it backwards
    (harmful), strategy 2 is noise."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    loss = torch.rand(n, generator=gen) ** 3 * 5  # heavy-tailed like real held-out losses
    rank = loss.argsort().argsort().float() / (n - 1)  # [n] in [0, 1]
    noise = torch.rand(n, generator=gen)
    scores = torch.stack((rank, 1.0 - rank, noise), dim=1)
    return x, scores, loss


def blobs(n_per_class: int = 60, labeled_per_class: int = 12, seed: int = 0, budget: int = 5):
    """Two overlapping Gaussian classes in 6-d; the first ``labeled_per_class`` of each labeled."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[1.0, 0, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0, 0]])
    x = torch.cat([centres[c] + torch.randn(n_per_class, 6, generator=gen) for c in range(2)])
    y = torch.arange(2).repeat_interleave(n_per_class)
    labels = torch.full_like(y, -1)
    for c in range(2):
        rows = torch.arange(c * n_per_class, c * n_per_class + labeled_per_class)
        labels[rows] = c
    state = make_pool(x, labels, 2, budget=budget, seed=seed)
    model = TaskModel.fit(x[labels >= 0], state.targets[labels >= 0], config=FAST_TASK, seed=seed)
    state.model = model
    state.probs = model.predict_proba(x)
    return state


def test_soft_top_fraction_selects_about_r_and_has_gradient():
    u = torch.linspace(0.0, 1.0, 101, requires_grad=True)
    s = soft_top_fraction(u, 0.2, 0.1)
    assert s[-1] > 0.9 and s[0] < 0.1
    assert abs(float(s.detach().sum()) - 20.5) < 6  # about r * n, soft at the edge
    s.sum().backward()
    assert u.grad is not None
    # Flaw 1 of the reference code: sigmoid(1e11 x) has zero gradient almost everywhere.
    assert int((u.grad.abs() > 1e-4).sum()) > 10


def test_soft_top_fraction_ignores_shifts_and_scales_of_u():
    u = torch.rand(50, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(soft_top_fraction(u, 0.3, 0.2), soft_top_fraction(3 * u + 7, 0.3, 0.2))


def test_search_objective_gives_every_searchnet_parameter_a_gradient():
    x, scores, loss = synthetic_search(64)
    net = SearchNet(4, 3, hidden=8)
    config = AutoALConfig()
    objective, _ = search_objective(net(x), scores, normalise_signal(loss, "loss"), config)
    objective.backward()
    assert net.head.weight.grad is not None and net.head.weight.grad.abs().sum() > 0
    assert net.head.bias.grad is not None and net.head.bias.grad.abs().sum() > 0
    # The output layer starts at zero (uniform mixture), so the body's gradient is zero on the
    # first step and non-zero once the head has moved.
    with torch.no_grad():
        net.head.weight.add_(0.1)
    net.zero_grad()
    objective, _ = search_objective(net(x), scores, normalise_signal(loss, "loss"), config)
    objective.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_untrained_searchnet_is_the_uniform_mixture():
    x, scores, _ = synthetic_search(10)
    weights = SearchNet(4, 3)(x)
    assert torch.allclose(weights, torch.full((10, 3), 1 / 3))
    base = torch.tensor([0.5, 0.3, 0.2])
    assert torch.allclose(SearchNet(4, 3)(x, base), base.expand(10, -1))


@pytest.mark.parametrize("embed_dims", [0, 4])
def test_search_moves_weight_to_the_informative_strategy(embed_dims):
    x, scores, loss = synthetic_search(300)
    config = AutoALConfig()  # the default: weights from the embedding, not from the scores
    net = SearchNet(embed_dims, 3, hidden=config.hidden)
    x = x[:, :embed_dims]
    parts = fit_search_net(net, x, scores, normalise_signal(loss, "loss"), config, seed=0)
    assert parts["reward_after"] > parts["reward_before"]
    with torch.no_grad():
        mean = net(x).mean(dim=0)
    assert mean[0] > 0.6, mean  # the strategy that ranks the loss
    assert mean[1] < 0.2, mean  # the harmful one, from 1/3 toward 0
    assert mean[2] < 0.2, mean  # noise, too


def test_validation_keeps_a_search_that_generalises():
    x, scores, loss = synthetic_search(300)
    config = AutoALConfig()
    net = SearchNet(0, 3)
    signal = normalise_signal(loss, "loss")
    lam, rewards = validated_shrinkage(net, x[:, :0], scores, signal, config, seed=0)
    assert lam >= 0.5, rewards
    assert rewards["1"] > rewards["0"]  # on unseen halves the search beats uniform
    # The net passed in is not trained by the validation (copies are).
    assert float(net.head.bias.detach().abs().sum()) == 0.0


def test_prior_keeps_few_labels_near_uniform():
    x, scores, loss = synthetic_search(12)
    config = AutoALConfig(prior_labels=200.0)
    net = SearchNet(4, 3)
    fit_search_net(net, x, scores, normalise_signal(loss, "loss"), config, seed=0)
    with torch.no_grad():
        mean = net(x).mean(dim=0)
    # A strong prior at 12 samples: no strategy loses most of its weight.
    assert float(mean.min()) > 0.2, mean


def test_leave_one_out_influence_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=gen)
    targets = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1, 2, 0]), 3).float()
    model = TaskModel.fit(x, targets, config=TaskModelConfig(steps=5), seed=0)
    head = model.head.out
    grads = []
    for i in range(7):
        head.zero_grad()
        torch.nn.functional.cross_entropy(
            head(x[i : i + 1]), targets[i : i + 1].argmax(1)
        ).backward()
        grads.append(torch.cat((head.weight.grad.flatten(), head.bias.grad.flatten())))
    g = torch.stack(grads)  # [7, C*(d+1)]
    expected = torch.stack([(g[i] * (g.sum(0) - g[i])).sum() / 6 for i in range(7)])
    assert torch.allclose(leave_one_out_influence(model, x, targets), expected, atol=1e-5)


def test_normalise_signal_is_robust_to_one_huge_loss():
    losses = torch.ones(100)
    losses[0] = 1e6
    signal = normalise_signal(losses, "loss")
    assert float(signal.max()) < 2.0
    influence = torch.zeros(100)
    influence[0] = 1e6
    assert float(normalise_signal(influence, "influence").max()) <= 3.0


def test_cross_fit_scores_each_labeled_item_once_with_a_model_that_did_not_see_it():
    state = blobs()
    config = AutoALConfig(folds=3)
    split = cross_fit(state, ["random", "margin"], config, FAST_TASK)
    labeled = state.labeled_indices()
    assert sorted(split.indices.tolist()) == sorted(labeled.tolist())
    assert sum(split.fold_sizes) == labeled.numel()
    assert split.scores.shape == (labeled.numel(), 2)
    assert float(split.scores.min()) >= 0.0 and float(split.scores.max()) <= 1.0
    # Held-out losses exceed the in-sample losses of the model trained on every label
    # (flaw 3: a model that has seen the search split rates it as easy).
    in_sample = state.model.per_sample_loss(state.features[labeled], state.targets[labeled])
    assert float(split.losses.mean()) > float(in_sample.mean())


def test_selector_prefers_margin_over_random_on_overlapping_blobs():
    state = blobs(n_per_class=150, labeled_per_class=40)
    # The paper's signal (held-out loss), which margin predicts here (correlation ~.86).
    # Global weights (no embedding), so the mean weight is the strategy's.
    selector = LabelOnlyAutoAL(portfolio=["random", "margin"], folds=4, signal="loss", embed_dims=0)
    selection = selector.select(state, state.unlabeled_indices())
    weights = selection.info["mean_weights"]
    assert selection.info["searched"] is True
    assert weights["margin"] > weights["random"] + 0.1, weights


def test_selection_contract_and_reproducibility():
    state = blobs()
    candidates = state.unlabeled_indices()
    first = make_selector("autoal_labels", portfolio=["random", "margin", "entropy"]).select(
        state, candidates
    )
    second = make_selector("autoal_labels", portfolio=["random", "margin", "entropy"]).select(
        state, candidates
    )
    m = candidates.numel()
    assert first.contributions.shape == (m, 3)
    assert torch.allclose(first.priority, first.contributions.sum(dim=1))
    assert float(first.priority.min()) >= 0.0 and float(first.priority.max()) <= 1.0 + 1e-6
    assert torch.equal(first.priority, second.priority)
    assert len(first.top_strategy()) == m
    assert abs(sum(first.mean_weights().values()) - 1.0) < 1e-5
    json.dumps(first.info)  # the round history stores it


def test_too_few_labels_means_no_search_and_the_uniform_mixture():
    state = blobs(labeled_per_class=2)
    selection = LabelOnlyAutoAL(portfolio=["random", "margin"]).select(
        state, state.unlabeled_indices()
    )
    assert selection.info["searched"] is False
    assert all(abs(w - 0.5) < 1e-6 for w in selection.info["mean_weights"].values())


def test_state_dict_round_trips_through_json_and_warm_starts():
    state = blobs()
    candidates = state.unlabeled_indices()
    selector = LabelOnlyAutoAL(portfolio=["random", "margin"], steps=20)
    selector.select(state, candidates)
    saved = json.loads(json.dumps(selector.state_dict()))
    restored = LabelOnlyAutoAL(portfolio=["random", "margin"], steps=20)
    restored.load_state_dict(saved)
    assert restored.rounds == 1
    x = selector.projection(state.features[candidates])
    with torch.no_grad():
        assert torch.allclose(selector.net(x), restored.net(x), atol=1e-6)
    # The next round continues from the restored SearchNet in both: same priorities.
    a = selector.select(state, candidates)
    b = restored.select(state, candidates)
    assert torch.allclose(a.priority, b.priority, atol=1e-5)


def test_state_of_another_selector_or_portfolio_starts_fresh():
    state = blobs()
    selector = LabelOnlyAutoAL(portfolio=["random", "margin"], steps=5)
    selector.select(state, state.unlabeled_indices())
    saved = saved_state(selector)
    same = LabelOnlyAutoAL(portfolio=["random", "margin"], steps=5)
    assert restore_state(same, saved) is None and same.rounds == 1
    other = LabelOnlyAutoAL(portfolio=["margin", "entropy"])
    assert "portfolio" in restore_state(other, saved) and other.net is None
    albl = make_selector("albl", portfolio=["random", "margin"])
    assert "written by selector 'autoal_labels'" in restore_state(albl, saved)
    assert "predates" in restore_state(same, selector.state_dict())  # no envelope


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    state = blobs()
    cpu = LabelOnlyAutoAL(portfolio=["random", "margin"]).select(state, state.unlabeled_indices())
    cuda_state = make_pool(
        state.features.cuda(),
        torch.where(state.labeled, state.class_indices(), -1).cuda(),
        2,
        budget=state.budget,
        seed=state.seed,
    )
    model = TaskModel.fit(
        cuda_state.features[cuda_state.labeled],
        cuda_state.targets[cuda_state.labeled],
        config=FAST_TASK,
        seed=state.seed,
    )
    cuda_state.model, cuda_state.probs = model, model.predict_proba(cuda_state.features)
    gpu = LabelOnlyAutoAL(portfolio=["random", "margin"]).select(
        cuda_state, cuda_state.unlabeled_indices()
    )
    assert gpu.priority.device.type == "cuda"
    assert torch.allclose(cpu.priority, gpu.priority.cpu(), atol=2e-3)


def test_bad_options_are_explained():
    with pytest.raises(ValueError, match="folds"):
        AutoALSelector(folds=1)
    with pytest.raises(ValueError, match="budget_fraction"):
        AutoALSelector(budget_fraction=1.5)
    with pytest.raises(ValueError, match="signal"):
        AutoALSelector(signal="rank")
    with pytest.raises(FileNotFoundError, match="no file"):
        AutoALSelector(prior="/no/such/prior.json")
    with pytest.raises(UnknownNameError, match="no_such_strategy.*valid: .*margin"):
        AutoALSelector(portfolio=["margin", "no_such_strategy"])
    with pytest.raises(TypeError):
        AutoALSelector(no_such_option=3)
    with pytest.raises(UnknownNameError, match="no_such_option.*valid: .*budget_fraction"):
        make_selector("autoal", no_such_option=3)


def test_strategy_rewards_rank_the_informative_strategy_first():
    x, scores, loss = synthetic_search(300)
    signal = normalise_signal(loss, "influence")  # standardised, as the default signal is
    rewards = strategy_rewards(scores, signal, 0.25)  # [3]
    # The loss-ranking strategy's top quarter holds the highest losses; the backwards one
    # the lowest.
    assert rewards[0] > rewards[2] > rewards[1], rewards


def test_search_objective_prior_is_zero_at_the_uniform_mixture():
    _, scores, loss = synthetic_search(50)
    config = AutoALConfig()
    signal = normalise_signal(loss, "loss")
    _, at_uniform = search_objective(torch.full((50, 3), 1 / 3), scores, signal, config)
    skewed = torch.tensor([0.6, 0.1, 0.3]).expand(50, -1)
    _, at_skewed = search_objective(skewed, scores, signal, config)
    assert abs(at_uniform["prior"]) < 1e-6
    assert at_skewed["prior"] > 0.05


def test_search_pulls_toward_its_base_not_toward_uniform():
    x, scores, loss = synthetic_search(12)
    config = AutoALConfig(prior_labels=200.0)
    base = torch.tensor([0.1, 0.1, 0.8])
    signal = normalise_signal(loss, "loss")
    _, at_base = search_objective(base.expand(12, -1), scores, signal, config, base)
    assert abs(at_base["prior"]) < 1e-6
    net = SearchNet(4, 3)
    fit_search_net(net, x, scores, signal, config, seed=0, base=base)
    with torch.no_grad():
        mean = net(x, base).mean(dim=0)
    # Few samples and a strong pull: the weights stay near the base, far from uniform.
    assert float((mean - base).abs().max()) < 0.15, mean


def test_a_state_saved_with_an_option_since_removed_still_loads():
    state = blobs(labeled_per_class=20)
    candidates = state.unlabeled_indices()
    selector = LabelOnlyAutoAL(portfolio=["margin", "random"], steps=20)
    selector.select(state, candidates)
    saved = json.loads(json.dumps(selector.state_dict()))
    # As saved by 0.1.0, which had options since removed.
    saved["config"] |= {"strategy_prior": False, "score_inputs": False, "evidence_decay": 0.0}
    restored = LabelOnlyAutoAL(portfolio=["margin", "random"], steps=20)
    restored.load_state_dict(saved)
    a, b = selector.select(state, candidates), restored.select(state, candidates)
    assert torch.allclose(a.priority, b.priority, atol=1e-5)
