"""Experiment runner (not maintained): benchmarks.simulate with AutoAL options from AUTOAL_OPTS.

    AUTOAL_OPTS='{"signal": "loss"}' PYTHONPATH=. .venv/bin/python \\
        docs/experiments/2026-11-25-run-autoal-options.py --dataset rotten --strategies autoal \\
        --initial 20 --batch 50 --rounds 20 --seeds 5 --out results/large/rotten-loss
"""

import json
import os
import sys

import model.autoal
from benchmarks.simulate import main

OPTIONS = json.loads(os.environ.get("AUTOAL_OPTS", "{}"))
_init = model.autoal.AutoALSelector.__init__


def _init_with_options(self, device=None, portfolio=None, **options):
    _init(self, device=device, portfolio=portfolio, **{**OPTIONS, **options})


model.autoal.AutoALSelector.__init__ = _init_with_options

if __name__ == "__main__":
    sys.exit(main())
