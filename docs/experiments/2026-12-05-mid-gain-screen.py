"""Which truth the choices prior should maximise once it also learns from batches of 50
(issue 24, the 20-520 budget): leave each family out, train on the others' small and mid
episodes with accuracy gain or with macro-F1 gain as the objective, and report the held-out
gain over the uniform mixture of the chosen actions in BOTH metrics, per regime and split into
long-tailed and balanced tasks (mean per recorded round, each episode weighing alike; its
standard error over episodes).

    PYTHONPATH=. python docs/experiments/2026-12-05-mid-gain-screen.py [--pull 0.001]
"""

import argparse
import statistics
from collections import defaultdict

import torch

from benchmarks.episodes import EXTRAS, FAMILIES, action_gains, load_episodes, training_rounds
from benchmarks.meta_train import DEFAULT_EPISODES, episode_files, feature_names
from model.selectors.autoal.prior import PriorTrainingConfig, train_prior
from model.strategies import PORTFOLIO


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pull", type=float, default=0.001)
    args = parser.parse_args()
    torch.set_num_threads(1)
    episodes = load_episodes(episode_files(DEFAULT_EPISODES, list(FAMILIES), ["small", "mid"]))
    config = PriorTrainingConfig(pull=args.pull, features=feature_names("base"))
    for objective in ("accuracy_gain", "macro_f1_gain"):
        # per (regime, tail): per episode, mean chosen gain in each metric
        cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for family in FAMILIES:
            train = [e for e in episodes if e["family"] != family]
            test = [e for e in episodes if e["family"] == family]
            rounds = training_rounds(train, objective)
            prior = train_prior(rounds, list(PORTFOLIO), config, extras=EXTRAS)
            for e in test:
                tail = "LT" if e["spec"]["imbalance"] > 1 else "balanced"
                for metric in ("accuracy_gain", "macro_f1_gain"):
                    gains = [float(action_gains(r, metric)[prior.choose(r["features"])])
                             for r in e["rounds"]]  # fmt: skip
                    cells[(e["regime"], tail)][metric].append(statistics.mean(gains))
        print(
            f"\nobjective {objective} (pull {args.pull}): held-out gain over the mixture per round"
        )
        for key in sorted(cells):
            parts = []
            for metric, values in cells[key].items():
                se = statistics.stdev(values) / len(values) ** 0.5
                parts.append(f"{metric.split('_')[0]} {statistics.mean(values):+.4f} ({se:.4f})")
            print(
                f"  {key[0]:5s} {key[1]:8s} episodes {len(cells[key]['accuracy_gain']):3d}  "
                + "  ".join(parts)
            )


if __name__ == "__main__":
    main()
