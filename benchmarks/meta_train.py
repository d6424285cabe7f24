"""Train AutoAL's SearchNet prior on cached labeling episodes (``benchmarks.episodes``).

    python -m benchmarks.meta_train --out model/selectors/autoal/prior.json
    python -m benchmarks.meta_train --exclude mnist --out benchmarks/priors/loo-mnist.json
    python -m benchmarks.meta_train --validate
    python -m benchmarks.meta_train --kind boxes --out model/selectors/autoal/prior-boxes.json

``--exclude FAMILY`` leaves a family out (the leave-one-data-set-out protocol: the prior judged
on MNIST never saw MNIST or anything derived from it), with every family that shares its data
(the span ``mixed`` family is built from ``tweets`` and ``news``: leaving out either leaves it
out too, and ``--validate`` holds them out together). ``--validate`` measures, for each
included family in turn, a prior trained on the others: the true gain over the uniform mixture
of the batches it would pick on the held-out family's recorded rounds (by the recorded truth),
next to the best single weight vector in hindsight. Deterministic: one thread, seeded, the same
episodes give the same file. The last line on stdout is a JSON summary. ``--kind boxes``
trains the box prior on box episodes (``benchmarks.box_episodes``: its families, its
portfolio, the mAP@.5 gain), ``--kind spans`` the span prior on span episodes
(``benchmarks.span_episodes``, the span-F1 gain).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from benchmarks.episodes import (
    EXTRAS,
    FAMILIES,
    REGIMES,
    load_episodes,
    parse_counts,
    training_rounds,
)
from model.selectors.autoal.geometry import GEOMETRY_FEATURES
from model.selectors.autoal.prior import (
    PriorTrainingConfig,
    TrainingRound,
    action_names,
    chosen_gain,
    train_prior,
)
from model.selectors.autoal.state import FEATURES
from model.strategies import PORTFOLIO

DEFAULT_EPISODES = Path.home() / ".cache" / "autoal-backend" / "episodes"
GAINS = ("accuracy_gain", "macro_f1_gain", "log_likelihood_gain", "map50_gain", "span_f1_gain")


@dataclass(frozen=True)
class KindEpisodes:
    """Where a kind's episodes live and how its prior is trained from them."""

    families: tuple[str, ...]
    regimes: tuple[str, ...]  # () when the episodes are not split by regime
    portfolio: tuple[str, ...]
    root: Path
    gain: str
    rounds: Callable[[list[dict], str], list[TrainingRound]]
    generator: str  # the command that makes the episodes
    # family -> the families its texts or images are drawn from (span ``mixed``: tweets and
    # news); a family and its sources are left out together
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # strategies the episodes also measured alone, outside the mixture (the prior's extras)
    extras: tuple[str, ...] = ()

    def related(self, a: str, b: str) -> bool:
        """Whether families ``a`` and ``b`` share data (one is, or is built from, the other)."""
        return a == b or a in self.sources.get(b, ()) or b in self.sources.get(a, ())

    def left_out_with(self, family: str) -> set[str]:
        """``family`` and every family that shares data with it."""
        return {f for f in self.families if self.related(f, family)}


def kind_episodes(kind: str) -> KindEpisodes:
    if kind == "boxes":
        from benchmarks import box_episodes
        from model.kinds.boxes import BOX_PORTFOLIO

        return KindEpisodes(box_episodes.FAMILIES, (), BOX_PORTFOLIO, box_episodes.DEFAULT_OUT,
                            "map50_gain", box_episodes.training_rounds,
                            "python -m benchmarks.box_episodes")  # fmt: skip
    if kind == "spans":
        from benchmarks import span_episodes
        from model.strategies import SPAN_PORTFOLIO

        return KindEpisodes(span_episodes.FAMILIES, (), tuple(SPAN_PORTFOLIO),
                            span_episodes.DEFAULT_OUT, "span_f1_gain", span_episodes.training_rounds,
                            "python -m benchmarks.span_episodes",
                            {"mixed": span_episodes.SOURCES})  # fmt: skip
    if kind == "choices":
        return KindEpisodes(FAMILIES, tuple(REGIMES), tuple(PORTFOLIO), DEFAULT_EPISODES,
                            "accuracy_gain", training_rounds,
                            "python -m benchmarks.episodes (see make meta-train)",
                            extras=EXTRAS)  # fmt: skip
    raise SystemExit(f"no episodes for kind {kind!r}; valid: choices, boxes, spans")


def episode_files(root: Path, families: list[str], regimes: list[str]) -> list[Path]:
    """Every cached episode of ``families`` x ``regimes`` (no regimes: ``root/family``), in a
    fixed order."""
    paths = []
    for regime in regimes or [""]:
        for family in families:
            paths += sorted((root / regime / family).glob("*.pt"))
    return paths


def by_group_mean(values: torch.Tensor, rounds: list[TrainingRound]) -> float:
    """Mean of per-round ``values`` [R], each family/regime group weighing alike."""
    weights = torch.tensor([r.weight for r in rounds])
    return float((values * weights).sum() / weights.sum())


def validate(rounds: list[TrainingRound], config: PriorTrainingConfig,
             portfolio: tuple[str, ...] = PORTFOLIO,
             related: Callable[[str, str], bool] = str.__eq__,
             extras: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Leave each family out in turn: the held-out true gain over uniform of the actions a
    prior trained on the others (none ``related`` to it: sharing its data) chooses, next to the
    best single action in hindsight (chosen on the held-out rounds themselves)."""
    families = sorted({r.group.split("/")[0] for r in rounds})
    names = action_names(list(portfolio), extras)
    report = {}
    for family in families:
        train = [r for r in rounds if not related(r.group.split("/")[0], family)]
        test = [r for r in rounds if r.group.split("/")[0] == family]
        if not train or not test:
            continue
        prior = train_prior(train, list(portfolio), config, extras=extras)
        fixed = torch.stack([r.gains for r in test])  # [R, A]
        weights = torch.tensor([r.weight for r in test])
        per_action = (fixed * weights[:, None]).sum(dim=0) / weights.sum()
        best = int(per_action.argmax())
        chosen = [names[prior.choose(r.features)] for r in test]
        gains = chosen_gain(prior, test)
        report[family] = {
            "prior_gain_over_uniform": round(by_group_mean(gains, test), 5),
            # per recorded round (the rounds of one episode are not independent: a lower bound)
            "standard_error": round(float(gains.std() / len(test) ** 0.5), 5),
            "prior_seen_gain_over_uniform": round(prior.meta["chosen_gain_over_uniform"], 5),
            "best_single_action": names[best],
            "best_single_action_gain_over_uniform": round(float(per_action[best]), 5),
            "rounds": len(test),
            "actions_chosen": {n: chosen.count(n) for n in sorted(set(chosen))},
        }
        print(f"{family}: {report[family]}", file=sys.stderr, flush=True)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.meta_train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--kind", default="choices", help="choices, boxes or spans")
    parser.add_argument("--episodes", default=None, help="the episode cache (default: the kind's)")
    parser.add_argument("--families", default="all", help="of the kind's families, or all")
    parser.add_argument("--exclude", default="", help="families left out (comma-separated)")
    parser.add_argument("--regimes", default=None, help=f"choices: of {', '.join(REGIMES)}")
    parser.add_argument(
        "--gain", default=None, choices=GAINS, help="the truth to maximise (default: the kind's)"
    )
    parser.add_argument("--out", default=None, help="where to write the prior (JSON)")
    parser.add_argument("--validate", action="store_true", help="leave-one-family-out check")
    parser.add_argument(
        "--no-extras",
        action="store_true",
        help="train without the actions of the episodes' extras (strategies measured alone "
        "outside the mixture: what they add)",
    )
    for f in fields(PriorTrainingConfig):
        if f.name == "features":
            parser.add_argument("--features", type=feature_names, default=(),
                                help="state features the prior reads, comma-separated; "
                                "'base' = all but the geometry ones (default: all recorded)")  # fmt: skip
            continue
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default
        )
    return parser


def feature_names(text: str) -> tuple[str, ...]:
    """``--features``: names of ``FEATURES`` (comma-separated), or ``base`` for those before
    the geometry features."""
    if text.strip() == "base":
        return tuple(n for n in FEATURES if n not in GEOMETRY_FEATURES)
    names = tuple(parse_counts(text))
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown features {unknown}; valid: {', '.join(FEATURES)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)  # deterministic reductions, and the heads are small
    kind = kind_episodes(args.kind)
    root = Path(args.episodes or kind.root).expanduser()
    gain = args.gain or kind.gain
    families = list(kind.families) if args.families == "all" else parse_counts(args.families)
    asked = set(parse_counts(args.exclude))
    unknown = sorted((set(families) | asked) - set(kind.families))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; valid: {', '.join(kind.families)}")
    excluded = set().union(*(kind.left_out_with(f) for f in asked)) if asked else set()
    families = [f for f in families if f not in excluded]
    regimes = parse_counts(args.regimes) if args.regimes else list(kind.regimes)
    paths = episode_files(root, families, regimes)
    if not paths:
        raise SystemExit(
            f"no episodes under {root} for {families} x {regimes}: run `{kind.generator}` first"
        )
    started = time.perf_counter()
    episodes = load_episodes(paths)
    rounds = kind.rounds(episodes, gain)
    extras = () if args.no_extras else kind.extras
    if args.no_extras and kind.extras:
        actions = len(action_names(list(kind.portfolio)))
        rounds = [replace(r, gains=r.gains[:actions]) for r in rounds]
    portfolio = list(kind.portfolio)
    config = PriorTrainingConfig(
        **{f.name: getattr(args, f.name) for f in fields(PriorTrainingConfig)}
    )
    summary: dict = {
        "episodes": len(paths),
        "rounds": len(rounds),
        "families": families,
        "regimes": regimes,
    }
    if args.validate:
        summary["validation"] = validate(rounds, config, tuple(portfolio), kind.related,
                                         extras)  # fmt: skip
    if args.out:
        command = "python -m benchmarks.meta_train " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        meta = {
            "command": command.strip(),
            "data": {
                "families": families,
                "excluded": sorted(excluded),
                "regimes": regimes,
                "episodes": len(paths),
                "episode_files": [str(p.relative_to(root)) for p in paths[:1]] + ["..."],
                "kind": args.kind,
                "generator": kind.generator,
                "gain": gain,
            },
            "seed": config.seed,
        }
        prior = train_prior(rounds, portfolio, config, meta, extras)
        prior.save(args.out)
        summary["out"] = args.out
        summary["training"] = asdict(config)
        summary["chosen_gain_over_uniform"] = prior.meta["chosen_gain_over_uniform"]
        summary["actions_chosen"] = prior.meta["actions_chosen"]
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
