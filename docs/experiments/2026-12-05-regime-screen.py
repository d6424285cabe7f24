"""What each regime of episodes adds to the choices prior (issue 24): leave each family out,
train on the others' episodes of the given regimes (12 base features, pull .001, the TypiClust
extra), and report the held-out accuracy gain over the uniform mixture of the chosen actions on
every regime's rounds (mean per round, each episode weighing alike; standard error over
episodes), whether or not the prior trained on that regime.

    PYTHONPATH=. python docs/experiments/2026-12-05-regime-screen.py small small,noisy small,mid,noisy
"""

import statistics
import sys
from collections import defaultdict

import torch

from benchmarks.episodes import EXTRAS, FAMILIES, action_gains, load_episodes, training_rounds
from benchmarks.meta_train import DEFAULT_EPISODES, episode_files, feature_names
from model.selectors.autoal.prior import PriorTrainingConfig, train_prior
from model.strategies import PORTFOLIO

TESTED = ("small", "noisy", "mid")


def main(trainings: list[str]) -> None:
    torch.set_num_threads(1)
    episodes = load_episodes(episode_files(DEFAULT_EPISODES, list(FAMILIES), list(TESTED)))
    config = PriorTrainingConfig(pull=0.001, features=feature_names("base"))
    for training in trainings:
        regimes = training.split(",")
        cells: dict[str, list[float]] = defaultdict(list)
        chosen: dict[str, int] = defaultdict(int)
        for family in FAMILIES:
            train = [e for e in episodes if e["family"] != family and e["regime"] in regimes]
            rounds = training_rounds(train)
            prior = train_prior(rounds, list(PORTFOLIO), config, extras=EXTRAS)
            for e in episodes:
                if e["family"] != family:
                    continue
                actions = [prior.choose(r["features"]) for r in e["rounds"]]
                gains = [
                    float(action_gains(r)[a]) for r, a in zip(e["rounds"], actions, strict=True)
                ]
                cells[e["regime"]].append(statistics.mean(gains))
                chosen[e["regime"]] += sum(a != 0 for a in actions)
        parts = []
        for regime in TESTED:
            values = cells[regime]
            se = statistics.stdev(values) / len(values) ** 0.5
            left = chosen[regime] / (10 * len(values))  # every regime has 10 recorded rounds
            parts.append(f"{regime} {statistics.mean(values):+.4f} ({se:.4f}; leaves {left:.0%})")
        print(f"trained on {training:16s} " + "  ".join(parts), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["small", "small,noisy"])
