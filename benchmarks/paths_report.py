"""Summary of the paths benchmark (``benchmarks/paths.py``): mean ± sd over seeds per
(target, backend, SDE, loss), LV-vs-KL Welch t-tests, and the README table.

    python -m benchmarks.paths --table     # the README table from results/paths.json
"""

from __future__ import annotations

import numpy as np

__all__ = ["summarise", "print_summary", "markdown_table"]


SUMMARY_KEYS = ("abs_dlogz", "log_z", "log_z_se", "ess_frac", "modes_covered", "share_min",
                "share_max", "near_mode", "energy_distance", "sd_rel_error_max", "seconds")
COMPARE_KEYS = ("abs_dlogz", "energy_distance", "share_min")


def _with_shares(row):
    if "num_modes" in row:
        row = {**row, "share_min": row["mode_frac_min"] * row["num_modes"],
               "share_max": row["mode_frac_max"] * row["num_modes"]}
    return row


def summarise(rows):
    """Mean and sd over seeds per (target, backend, sde, loss), and LV-vs-KL Welch tests."""
    from scipy import stats

    groups: dict = {}
    for r in rows:
        groups.setdefault((r["target"], r["backend"], r["sde"], r["loss"]), []).append(
            _with_shares(r))
    summary = []
    for (target, backend, sde, loss), rs in groups.items():
        entry = {"target": target, "backend": backend, "sde": sde, "loss": loss,
                 "seeds": [r["seed"] for r in rs]}
        if "num_modes" in rs[0]:
            entry["num_modes"] = rs[0]["num_modes"]
        for k in SUMMARY_KEYS:
            vals = np.array([r[k] for r in rs if k in r], dtype=float)
            if vals.size:
                entry[k] = {"mean": float(vals.mean()),
                            "sd": float(vals.std(ddof=1)) if vals.size > 1 else None,
                            "values": vals.tolist()}
        summary.append(entry)
    comparisons = []
    for (target, backend, sde, loss), rs in groups.items():
        other = groups.get((target, backend, sde, "kl"))
        if loss != "lv" or other is None:
            continue
        rs, other = [_with_shares(r) for r in rs], [_with_shares(r) for r in other]
        comp = {"target": target, "backend": backend, "sde": sde}
        for k in COMPARE_KEYS:
            a = np.array([r[k] for r in rs if k in r])
            b = np.array([r[k] for r in other if k in r])
            if a.size < 2 or b.size < 2:
                continue
            t = stats.ttest_ind(a, b, equal_var=False)
            comp[k] = {"lv_mean": float(a.mean()), "kl_mean": float(b.mean()),
                       "diff": float(a.mean() - b.mean()), "welch_p": float(t.pvalue)}
        comparisons.append(comp)
    return summary, comparisons


def _fmt(entry, key, digits=3):
    v = entry.get(key)
    if v is None:
        return "-"
    sd = "" if v["sd"] is None else f"±{v['sd']:.{digits}f}"
    return f"{v['mean']:.{digits}f}{sd}"


def print_summary(summary, comparisons):
    print(f"\n{'target':10s} {'backend':8s} {'sde':4s} {'loss':4s} {'n':>2s} {'|dlogZ|':>14s} "
          f"{'IS se':>7s} {'ESS/N':>12s} {'modes':>9s} {'min share':>11s} {'energy':>13s}")
    for e in summary:
        modes = _fmt(e, "modes_covered", 1) if "num_modes" in e else "-"
        print(f"{e['target']:10s} {e['backend']:8s} {e['sde']:4s} {e['loss']:4s} "
              f"{len(e['seeds']):2d} {_fmt(e, 'abs_dlogz', 4):>14s} "
              f"{e['log_z_se']['mean']:7.4f} {_fmt(e, 'ess_frac'):>12s} {modes:>9s} "
              f"{_fmt(e, 'share_min', 2):>11s} {_fmt(e, 'energy_distance'):>13s}")
    print("\nLV - KL (mean over seeds), Welch p-value:")
    for c in comparisons:
        parts = [f"{k} {c[k]['diff']:+.4f} (p={c[k]['welch_p']:.3f})" for k in COMPARE_KEYS
                 if k in c]
        print(f"  {c['target']:10s} {c['backend']:8s} {c['sde']:4s} " + "; ".join(parts))


NAMES = {"gmm9": "GMM-9", "funnel": "funnel-10", "many_well": "many-well-5",
         "many_well_50d": "many-well-50 (mw_50d)"}


def markdown_table(data):
    """The README table from a results file: mean ± sd over seeds, IS s.e. averaged over seeds."""
    lines = ["| target | SDE | loss | seeds | \\|Δlog Z\\| | IS s.e. | ESS/N | modes "
             "| min / max share | energy distance |", "|---|---|---|---|---|---|---|---|---|---|"]
    for e in data["summary"]:
        name = NAMES[e["target"]] + (" (Pyro, 200 steps)" if e["backend"] == "pyro" else "")
        modes = "–"
        if "num_modes" in e:
            vals = sorted({int(v) for v in e["modes_covered"]["values"]})
            modes = f"{','.join(map(str, vals))}/{e['num_modes']}"
        share = (f"{_fmt(e, 'share_min', 2)} / {_fmt(e, 'share_max', 2)}" if "num_modes" in e
                 else "–")
        lines.append(
            f"| {name} | {e['sde'].upper()} | {e['loss'].upper()} | {len(e['seeds'])} | "
            f"{_fmt(e, 'abs_dlogz', 3)} | {e['log_z_se']['mean']:.3f} | {_fmt(e, 'ess_frac')} | "
            f"{modes} | {share} | {_fmt(e, 'energy_distance')} |")
    lines += ["", "LV − KL, difference of seed means (Welch p):"]
    for c in data["comparisons"]:
        parts = [f"{k} {c[k]['diff']:+.4f} (p={c[k]['welch_p']:.3f})" for k in COMPARE_KEYS
                 if k in c]
        lines.append(f"- {NAMES[c['target']]} {c['backend']} {c['sde'].upper()}: "
                     + "; ".join(parts))
    return "\n".join(lines)
