"""Screen (analysis): accuracy estimators of the current model on the unlabeled tasks, judged
on the recordings of ``2026-12-05-estimate-record.py``.

    PYTHONPATH=. python docs/experiments/2026-12-05-estimate-screen.py results/estimate-screen/*.pt

For every round of every seed: the truth (the round model's accuracy on the tasks still
unlabeled), and each estimator's value and 95% band from what the backend could know at that
point. Prints, per recording and estimator: rounds with a value, bias, mean absolute error,
band coverage; then the same over the rounds a show rule lets through (band half-width at
most ``--show``).
"""

import argparse
import math
from collections import defaultdict

import numpy as np
import torch
from scipy import stats


def temperature(oof_probs, labels):
    """The temperature T minimising the NLL of softmax(log p / T) on out-of-fold rows."""
    logp = torch.log(oof_probs.double().clamp_min(1e-12))
    best, best_t = math.inf, 1.0
    for t in np.exp(np.linspace(math.log(0.25), math.log(8.0), 61)):
        nll = float(torch.nn.functional.cross_entropy(logp / t, labels, reduction="mean"))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


def scaled_conf(probs, t):
    return torch.softmax(torch.log(probs.double().clamp_min(1e-12)) / t, dim=1).max(dim=1).values


def mean_band(residuals, floor_var=0.0, z=None):
    """Mean of ``residuals`` with a t band; variance at least ``floor_var``."""
    n = len(residuals)
    if n == 0:
        return None
    r = np.asarray(residuals, dtype=np.float64)
    var = r.var(ddof=1) if n > 1 else 0.25
    var = max(var, floor_var)
    q = stats.t.ppf(0.975, max(n - 1, 1)) if z is None else z
    half = q * math.sqrt(var / n)
    return float(r.mean()), half


PSEUDO = 3.0


def weighted_band(residuals, w, base, k=3.0):
    """Self-normalised weighted mean of ``residuals`` and a 95% t half-width whose variance
    carries ``k`` pseudo-observations at the variance of a plain Bernoulli at the estimate."""
    r, w = residuals.double(), w.double()
    mean = float((w * r).sum() / w.sum())
    n_eff = float(w.sum() ** 2 / (w * w).sum())
    acc = min(max(base + mean, 0.0), 1.0)
    v0 = max(acc * (1 - acc), 0.01)
    ss = float((w * (r - mean) ** 2).sum() / w.sum()) * n_eff
    var = (ss + k * v0) / (max(n_eff - 1.0, 0.0) + k)
    q = stats.t.ppf(0.975, max(n_eff - 1, 1))
    return mean, q * math.sqrt(var / n_eff)


def wilson(k, n, z=1.96):
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


def estimates_for_round(run, r, pool_labels, treat_initial_random):
    rec = run["rounds"][r]
    lb = rec["labels_before"]
    unl = lb < 0
    labeled = torch.nonzero(~unl).flatten()
    probs = rec["probs"].float()
    conf, guess = probs.max(dim=1)
    correct = (guess == pool_labels).double()
    truth = float(correct[unl].mean())
    lf = float(conf[unl].double().mean())
    out = {"truth": truth, "test": rec["test_accuracy"]}
    out["label_free"] = (lf, lf, lf)

    # random-sampled labeled rows: audited (and the initial labels, if asked)
    random_rows = rec["audited_before"].clone()
    if treat_initial_random:
        random_rows |= rec["labeled_round"] == 0
    # prequential audits: judged against the model that made them (rounds < r)
    pre_c, pre_conf, pre_round = [], [], []
    for s in range(r):
        prev = run["rounds"][s]
        picked, flags = prev["picked"], prev["picked_audit"]
        p = prev["probs"].float()[picked]
        cs, gs = p.max(dim=1)
        for i, a in enumerate(flags.tolist()):
            if a:
                pre_c.append(float(gs[i] == pool_labels[picked[i]]))
                pre_conf.append(float(cs[i]))
                pre_round.append(s)
    if pre_c:
        w = wilson(sum(pre_c), len(pre_c))
        out["audit_preq"] = w
        mb = mean_band(np.array(pre_c) - np.array(pre_conf))
        out["audit_preq_diff"] = (lf + mb[0], lf + mb[0] - mb[1], lf + mb[0] + mb[1])
    # cross-fit on all labeled: temperature, calibrated label-free
    oof_all = rec["oof_all"].float()
    y_lab = pool_labels[labeled]
    t = temperature(oof_all, y_lab)
    cal_u = scaled_conf(probs[unl], t)
    cal_lf = float(cal_u.mean())
    out["calibrated_lf"] = (cal_lf, cal_lf, cal_lf)
    out["temperature"] = t
    # cross-fit on audited rows: judged against (nearly) the current model
    is_rand = random_rows[labeled]
    oof_a = rec["oof_audit"]
    if treat_initial_random:
        oof_a = None  # initial rows have OOF only in oof_all (5-fold over everything)
    rows = torch.nonzero(is_rand).flatten()
    if rows.numel():
        source = (oof_a.float() if oof_a is not None else oof_all)[rows]
        c_a = (source.argmax(dim=1) == y_lab[rows]).double()
        conf_a = source.max(dim=1).values.double()
        m_a = scaled_conf(source, t)
        # importance weights of the draws: 1 / (|U_s| q); 1 for a uniform draw
        q = rec["audit_q"][labeled[rows]].double()
        size = rec["audit_pool"][labeled[rows]].double()
        w = torch.where(q > 0, 1.0 / (size * q).clamp_min(1e-12), torch.ones_like(q))
        n = rows.numel()
        out["audit_oof"] = wilson(float(c_a.sum()), n)
        mb = mean_band((c_a - conf_a).numpy())
        out["audit_oof_diff"] = (lf + mb[0], lf + mb[0] - mb[1], lf + mb[0] + mb[1])
        floor = float((m_a * (1 - m_a)).mean())
        mb = mean_band((c_a - m_a).numpy(), floor_var=floor)
        out["caldiff"] = (cal_lf + mb[0], cal_lf + mb[0] - mb[1], cal_lf + mb[0] + mb[1])
        for name, base, m in (("raw_pc", lf, conf_a), ("cal_pc", cal_lf, m_a)):
            v, half = weighted_band(c_a - m, w, base, k=PSEUDO)
            out[name] = (base + v, base + v - half, base + v + half)
        floor_u = float((cal_u * (1 - cal_u)).mean())
        mb = mean_band((c_a - m_a).numpy(), floor_var=floor_u)
        out["ufloor"] = (cal_lf + mb[0], cal_lf + mb[0] - mb[1], cal_lf + mb[0] + mb[1])
        out["n_random"] = n
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--show", type=float, default=0.10)
    parser.add_argument("--initial-random", action="store_true")
    parser.add_argument("--min-n", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated estimators")
    parser.add_argument("--by-round", action="store_true")
    parser.add_argument("--rounds", default=None, help="first:last rounds to judge")
    args = parser.parse_args()
    for path in args.files:
        rec = torch.load(path, weights_only=False)
        table = defaultdict(list)  # estimator -> [(truth, value, low, high, round)]
        temps = []
        for _seed, run in rec["runs"].items():
            pool_labels = run["pool_labels"]
            for r in range(len(run["rounds"])):
                est = estimates_for_round(run, r, pool_labels, args.initial_random)
                temps.append(est.get("temperature"))
                for key, v in est.items():
                    if isinstance(v, tuple) and v is not None:
                        table[key].append((est["truth"], *v, r, est.get("n_random", 0)))
        print(f"== {rec['dataset']} audit {rec['args']['audit_fraction']} "
              f"({rec['args'].get('audit_mode', 'uniform')}); T median {np.median(temps):.2f}")  # fmt: skip
        for key, rows in table.items():
            if args.only and key not in args.only.split(","):
                continue
            a = np.array(rows)
            err = a[:, 1] - a[:, 0]
            inside = (a[:, 2] <= a[:, 0]) & (a[:, 0] <= a[:, 3])
            half = (a[:, 3] - a[:, 2]) / 2
            shown = (half <= args.show) & (a[:, 5] >= args.min_n)
            line = (f"  {key:18s} n {len(a):3d} bias {err.mean():+.3f} mae {np.abs(err).mean():.3f} "
                    f"cover {inside.mean():.2f}")  # fmt: skip
            if shown.any() and key not in ("label_free", "calibrated_lf"):
                line += (f" | shown {shown.sum():3d} mae {np.abs(err[shown]).mean():.3f} "
                         f"cover {inside[shown].mean():.2f}")  # fmt: skip
            print(line)
            if args.by_round:
                cells = []
                for r in range(int(a[:, 4].max()) + 1):
                    at = a[:, 4] == r
                    s_at = shown & at
                    mae = np.abs(err[s_at]).mean() if s_at.any() else float("nan")
                    cells.append(f"r{r}:{s_at.sum()}/{at.sum()} {mae:.3f}")
                print("     ", " ".join(cells))


if __name__ == "__main__":
    main()
