"""The benchmark's figure: accuracy against fit time, and the training curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def draw(results, path):
    """Save a two-panel PNG: RMSE vs fit time, and per-epoch curves of our algorithms."""
    fig, (ax_front, ax_curve) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        s = r.summary()
        ax_front.errorbar(s["fit_s"][0], s["rmse"][0], yerr=s["rmse"][1], fmt="o", capsize=3)
        ax_front.annotate(f"{r.algorithm} ({r.dataset})", (s["fit_s"][0], s["rmse"][0]),
                          textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax_front.set_xscale("log")
    ax_front.set_xlabel("fit time per fold (s, log scale)")
    ax_front.set_ylabel("test RMSE (mean over folds)")
    ax_front.set_title("Accuracy against fit time (lower left is better)")
    ax_front.grid(alpha=0.3)
    for r in results:
        for key, style in (("train_rmse", "--"), ("eval_rmse", "-")):
            values = r.curves.get(key)
            if values:
                ax_curve.plot(range(1, len(values) + 1), values, style,
                              label=f"{r.algorithm} {key.replace('_rmse', '')} ({r.dataset})")
    ax_curve.set_xlabel("epoch (SVD, SVD++: one optimizer step; ALS: one sweep; NMF: one update)")
    ax_curve.set_ylabel("RMSE")
    ax_curve.set_title("Training curves, fold 1")
    if ax_curve.lines:  # Surprise's algorithms have no curves
        ax_curve.legend(fontsize=7)
    ax_curve.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
