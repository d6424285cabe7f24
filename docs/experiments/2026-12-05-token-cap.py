"""Screen: what the span tagger's training-token cap (model.kinds.spans.MAX_TRAIN_TOKENS)
costs in entity F1 where it applies, WNUT-16 from 20 to 1,020 labeled texts.

    python docs/experiments/2026-12-05-token-cap.py --cap 16384 --out results/token-cap/16384
    python docs/experiments/2026-12-05-token-cap.py --cap 100000000 --out results/token-cap/none

Every other argument goes to ``benchmarks.simulate`` (defaults: --dataset wnut16 --strategies
uniform,token_margin --initial 20 --batch 100 --rounds 10 --seeds 2). Recorded in
docs/spans.md ("The training-token cap").
"""

import argparse
import sys

import model.kinds.spans as spans
from benchmarks import simulate

DEFAULTS = ["--dataset", "wnut16", "--strategies", "uniform,token_margin", "--initial", "20",
            "--batch", "100", "--rounds", "10", "--seeds", "2"]  # fmt: skip

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap", type=int, required=True)
    known, rest = parser.parse_known_args()
    spans.MAX_TRAIN_TOKENS = known.cap
    # training_rows reads the limit at call time through its default: rebind the default too.
    spans.training_rows.__defaults__ = (known.cap,)
    sys.exit(simulate.main(DEFAULTS + rest))
