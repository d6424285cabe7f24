"""The AutoAL selector: the prior's weights for this round's state, optionally refined by the
per-project bi-level search, applied to the portfolio's rank-normalised scores.

One round (``AutoALSelector.select``):

1. **Scores.** Every portfolio strategy scores the candidates with the round's task model,
   rank-normalised into [0, 1] (AUTOAL.md flaw 4): A [M, K].
2. **Prior.** The round's state features (``state.py``) go through the trained SearchNet
   prior (``prior.py``): weights w0 [K] (the uniform mixture when ``prior=none``), or one of
   the prior's extras alone (TypiClust for the choices prior: no member of the mixture, scored
   only in a round that takes it).
3. **Online search** (``online``). Cross-fitting scores the labeled items with models that
   did not see them (``signals.cross_fit``); SearchNet, warm-started across rounds, learns
   per-sample weights that raise the label-only signal of its soft top-r selection
   (``search.py``), pulled toward w0; a 2-fold validation picks how far to move from w0.
4. **Priority** u = sum_j w_nj A_nj; the contributions w * A say which strategy put each task
   where it is.

Which combination is the default is decided by measurement (docs/benchmarks.md): ``autoal``
is always the design that measures best; ``autoal_online`` adds the online search to the
prior; ``autoal_labels`` is the published design (no prior, the search on the project's own
labels only).
"""

from __future__ import annotations

import time
from dataclasses import asdict, fields

import torch

from model.errors import EmptyPoolError
from model.kinds import prior_role
from model.pool import PoolState
from model.seeding import seeded
from model.selectors import Selection, register_selector
from model.selectors.autoal.config import AutoALConfig
from model.selectors.autoal.prior import action_weights, load_prior
from model.selectors.autoal.search import (
    Projection,
    SearchNet,
    fit_search_net,
    uniform_weights,
    validated_shrinkage,
)
from model.selectors.autoal.signals import cross_fit, loss_correlations, normalise_signal
from model.selectors.autoal.state import FEATURES, round_features
from model.strategies import resolve_portfolio, score_matrix
from model.task_model import TaskModel, TaskModelConfig


def _to_lists(tensors: dict[str, torch.Tensor]) -> dict[str, list]:
    return {k: v.detach().cpu().tolist() for k, v in tensors.items()}


def _from_lists(values: dict[str, list], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in values.items()}


def _named(names: list[str], values: torch.Tensor, digits: int = 4) -> dict[str, float]:
    return {n: round(float(v), digits) for n, v in zip(names, values.tolist(), strict=True)}


class AutoALSelector:
    """AutoAL: prior weights from the round's state, optionally an online search on top.

    Args:
        device: where a restored SearchNet is placed before its first round (the search
            itself runs where the pool lives); None means the CPU.
        portfolio: strategy names to mix; default ``PORTFOLIO`` restricted to registered names.
            A prior is trained for one portfolio: another one needs ``prior=none``.
        **options: fields of ``AutoALConfig``.
    """

    name = "autoal"
    defaults: dict = {}

    def __init__(
        self,
        device: torch.device | str | None = None,
        portfolio: list[str] | tuple[str, ...] | None = None,
        **options,
    ) -> None:
        self.device = torch.device(device) if device is not None else None
        self.config = AutoALConfig(**{**self.defaults, **options})
        self.portfolio = resolve_portfolio(portfolio, "AutoAL")
        self.prior = load_prior(self.config.prior, self.portfolio)
        # A kind's portfolio takes the places of the choices portfolio member by member
        # (``model.kinds``): a prior trained on choices episodes reads it through those roles;
        # one trained on the kind's own episodes names its strategies.
        if self.prior is not None and self.prior.portfolio not in (
            list(self.portfolio),
            [prior_role(n) for n in self.portfolio],
        ):
            raise ValueError(
                f"the AutoAL prior {self.config.prior!r} was trained for portfolio "
                f"{self.prior.portfolio}, not {self.portfolio}; use prior=none for another one"
            )
        self.net: SearchNet | None = None
        self.projection: Projection | None = None
        self.rounds = 0
        # lambda of the last validated search; 1.0 = SearchNet's weights as they are.
        self.shrinkage = 1.0

    @classmethod
    def options(cls) -> dict:
        """{option: default} accepted by ``make_selector`` for this selector."""
        return {"portfolio": None, **asdict(AutoALConfig(**cls.defaults))}

    def _ensure_net(self, state: PoolState, device: torch.device) -> None:
        dim = state.features.shape[1]
        if self.projection is None or self.projection.basis.shape[0] != dim:
            self.projection = Projection.fit(state.features, self.config.embed_dims, state.seed)
            self.net = None
        self.projection = self.projection.to(device)
        if self.net is None:
            with seeded(state.seed, device):
                self.net = SearchNet(self.projection.dims, len(self.portfolio), self.config.hidden)
        self.net = self.net.to(device)

    def select(self, state: PoolState, candidates: torch.Tensor) -> Selection:
        """Priorities [M] for ``candidates`` [M]; ``state`` must carry the trained model."""
        if candidates.numel() == 0:
            raise EmptyPoolError("AutoAL: no candidates to score")
        device = state.device
        info: dict = {"portfolio": list(self.portfolio), "round": self.rounds}
        seconds: dict[str, float] = {}

        start = time.perf_counter()
        scores = score_matrix(state, self.portfolio, candidates)  # [M, K]
        seconds["portfolio"] = time.perf_counter() - start

        start = time.perf_counter()
        members = list(self.portfolio)
        base = uniform_weights(len(self.portfolio), device)
        if self.prior is not None:
            features = round_features(state, scores, self.portfolio, candidates)
            probabilities = self.prior.probabilities(features)
            action = self.prior.choose(features)
            base = action_weights(self.portfolio, self.prior.extras)[action].to(device)
            if self.prior.extras:
                base, scores, members = self._with_extras(state, candidates, base, scores, info)
            info["state"] = _named(list(FEATURES), features)
            info["prior_action"] = self.prior.actions[action]
            if action != int(probabilities.argmax()):
                # The gate found too little evidence for the most probable action.
                info["prior_gated"] = self.prior.actions[int(probabilities.argmax())]
            info["prior_probabilities"] = _named(self.prior.actions, probabilities)
            info["prior_weights"] = _named(members, base)
        seconds["prior"] = time.perf_counter() - start

        weights = base.expand(candidates.numel(), -1)  # [M, K]
        if self.config.online:
            # The online search needs every strategy in play: it starts from the prior's
            # weights mixed with a tenth of the uniform mixture.
            start_from = 0.9 * base + 0.1 * uniform_weights(len(self.portfolio), device)
            weights = self._search(state, candidates, start_from, info, seconds)
        info["shrinkage"] = self.shrinkage if self.config.online else 0.0
        contributions = weights * scores  # [M, K] (K + E with the prior's extras)
        self.rounds += 1
        info["mean_weights"] = _named(members, weights.mean(dim=0), 6)
        info["seconds"] = seconds
        return Selection(candidates, contributions.sum(dim=1), members, contributions, info)

    def _with_extras(
        self,
        state: PoolState,
        candidates: torch.Tensor,
        base: torch.Tensor,
        scores: torch.Tensor,
        info: dict,
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """The prior's extras (strategies it may choose alone, no member of the mixture):
        weights [K + E], scores [M, K + E] (an extra is scored only when chosen) and member
        names. The online search mixes the portfolio only, so there the extras are dropped and
        an extra's action starts the search from the uniform mixture."""
        assert self.prior is not None
        k = len(self.portfolio)
        if self.config.online:
            if float(base[:k].sum()) == 0.0:
                info["prior_extra_dropped"] = True
                return uniform_weights(k, base.device), scores, list(self.portfolio)
            return base[:k], scores, list(self.portfolio)
        columns = [
            score_matrix(state, [name], candidates)
            if float(base[k + i]) > 0
            else torch.zeros(candidates.numel(), 1, device=scores.device)
            for i, name in enumerate(self.prior.extras)
        ]
        return base, torch.cat([scores, *columns], dim=1), [*self.portfolio, *self.prior.extras]

    def _search(
        self,
        state: PoolState,
        candidates: torch.Tensor,
        base: torch.Tensor,
        info: dict,
        seconds: dict[str, float],
    ) -> torch.Tensor:
        """The online bi-level search from ``base`` [K]; weights [M, K] for the candidates."""
        device = state.device
        if state.kind != "choices":
            raise ValueError(
                f"the online search cross-fits a choices head; it does not serve {state.kind} "
                "projects yet: use autoal (the prior) there"
            )
        self._ensure_net(state, device)
        assert self.net is not None and self.projection is not None
        num_labeled = int(state.labeled.sum())
        needed = max(self.config.min_search_labels, 2 * self.config.folds)
        if num_labeled >= needed:
            task_config = (
                state.model.config if isinstance(state.model, TaskModel) else TaskModelConfig()
            )
            start = time.perf_counter()
            split = cross_fit(state, self.portfolio, self.config, task_config)
            seconds["cross_fit"] = time.perf_counter() - start
            start = time.perf_counter()
            raw = split.influence if self.config.signal == "influence" else split.losses
            signal = normalise_signal(raw, self.config.signal)
            x = self.projection(state.features[split.indices])
            seed = state.seed + self.rounds
            if self.config.validate and split.indices.numel() >= 8:
                self.shrinkage, rewards = validated_shrinkage(
                    self.net, x, split.scores, signal, self.config, seed, base
                )
                info["validation_reward"] = {k: round(v, 4) for k, v in rewards.items()}
            info.update(fit_search_net(self.net, x, split.scores, signal, self.config, seed, base))
            seconds["search"] = time.perf_counter() - start
            info["search_samples"] = int(split.indices.numel())
            info["fold_sizes"] = split.fold_sizes
            info["mean_held_out_loss"] = float(split.losses.mean())
            # How well each strategy alone ranks the held-out loss: a readable diagnostic.
            info["strategy_loss_correlation"] = loss_correlations(
                split.scores, split.losses, self.portfolio
            )
            info["searched"] = True
        else:
            info["searched"] = False
            info["reason"] = f"{num_labeled} labeled items; the search needs {needed}"
        start = time.perf_counter()
        with torch.no_grad():
            self.net.eval()
            learned = torch.cat(
                [
                    self.net(self.projection(state.features[chunk]), base)
                    for chunk in candidates.split(65536)
                ]
            )  # [M, K]
            weights = (1.0 - self.shrinkage) * base + self.shrinkage * learned
        seconds["weigh"] = time.perf_counter() - start
        return weights

    def state_dict(self) -> dict:
        """JSON-able state: the config, round count, shrinkage, SearchNet and projection."""
        state: dict = {
            "config": asdict(self.config),
            "rounds": self.rounds,
            "shrinkage": self.shrinkage,
        }
        if self.net is not None and self.projection is not None:
            state["net"] = _to_lists(self.net.state_dict())
            state["projection"] = _to_lists(
                {
                    "mean": self.projection.mean,
                    "basis": self.projection.basis,
                    "scale": self.projection.scale,
                }
            )
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state saved by this selector over the same portfolio
        (``model.selectors.restore_state`` checks both before calling this)."""
        self.rounds = int(state.get("rounds", 0))
        self.shrinkage = float(state.get("shrinkage", 1.0))
        if "net" not in state:
            self.net, self.projection = None, None
            return
        device = self.device or torch.device("cpu")
        proj = _from_lists(state["projection"], device)
        self.projection = Projection(proj["mean"], proj["basis"], proj["scale"])
        # Only the fields this version knows: a state saved with an option since removed loads.
        known = {f.name for f in fields(AutoALConfig)}
        saved = {k: v for k, v in state.get("config", {}).items() if k in known}
        hidden = int(saved.get("hidden", self.config.hidden))
        net = SearchNet(self.projection.dims, len(self.portfolio), hidden)
        net.load_state_dict(_from_lists(state["net"], device))
        self.net = net.to(device)


register_selector(
    "autoal",
    description="AutoAL: SearchNet weights over the portfolio (the design that measures best)",
)(AutoALSelector)


@register_selector(
    "autoal_online",
    description="AutoAL's prior, then the bi-level search on the project's labels, shrunk toward it",
)
class OnlineAutoAL(AutoALSelector):
    """The prior's choice as the start, refined by the per-project bi-level search."""

    name = "autoal_online"
    defaults = {"online": True}


@register_selector(
    "autoal_labels",
    description="the published AutoAL design: the bi-level search on the project's labels only",
)
class LabelOnlyAutoAL(AutoALSelector):
    """AutoAL as published: no prior, the search on the project's own labels."""

    name = "autoal_labels"
    defaults = {"prior": "none", "online": True}
