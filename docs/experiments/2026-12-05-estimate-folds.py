"""Screen: the accuracy figure's cross-fit folds (model.estimate.FOLDS), everything else as
``benchmarks.simulate`` runs it.

    PYTHONPATH=. python docs/experiments/2026-12-05-estimate-folds.py --folds 10 \\
        --dataset mnist --strategies autoal --seeds 6 --audit-fraction 0.1 \\
        --audit-until-trusted 0.5 --out results/estimate-folds/10/mnist

Recorded in docs/experiments/2026-12-05-accuracy-figure.md.
"""

import argparse
import sys

import model.estimate as estimate
from benchmarks import simulate

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--folds", type=int, required=True)
    known, rest = parser.parse_known_args()
    estimate.FOLDS = known.folds
    # out_of_fold reads the fold count through its default: rebind the default too.
    defaults = estimate.out_of_fold.__kwdefaults__ or {}
    estimate.out_of_fold.__kwdefaults__ = {**defaults, "folds": known.folds}
    sys.exit(simulate.main(rest))
