"""The study's picture of one family: per score, the PR curves of every held-out digit (top) and
the score histograms of in-distribution and held-out test digits (bottom), pooled over the
held-out digits after standardizing each digit's scores by its in-distribution test scores (each
digit's model has its own scale)."""
import os

import numpy as np

from .. import plots as _plots  # noqa: F401 - selects the headless Agg backend before pyplot loads
from . import scores as S


def family_figure(name, fam, path):
    import matplotlib.pyplot as plt
    per_digit = fam["_per_digit"]
    names = list(fam["scores"])
    cols = max(1, len(names))
    fig, axes = plt.subplots(2, cols, figsize=(3.6 * cols, 6.4), squeeze=False)
    colors = plt.get_cmap("tab10")
    for j, score in enumerate(names):
        top, bottom = axes[0, j], axes[1, j]
        inl, outl, rate = [], [], []
        for d, v in sorted(per_digit.items()):
            s, y = v["scores"].get(score), v["labels"]
            if s is None or not np.isfinite(s).all() or y.sum() == 0:
                continue
            precision, recall, _ = S.pr_curve(s, y)
            ap = fam["scores"][score]["aupr"].get(d, float("nan"))
            top.step(np.r_[0, recall], np.r_[precision[0], precision], where="post", color=colors(d % 10), lw=1,
                     label=f"{d}: {100 * ap:.0f}")
            ref = s[y == 0]
            z = (s - ref.mean()) / (ref.std() or 1.0)
            inl.append(z[y == 0])
            outl.append(z[y == 1])
            rate.append(y.mean())
        if rate:
            top.axhline(float(np.mean(rate)), color="gray", ls="--", lw=0.8)
        m = fam["scores"][score]
        top.set_title(f"{score}\nAUPR mean {100 * m['mean_aupr']:.1f}, median {100 * m['median_aupr']:.1f}",
                      fontsize=9)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.02)
        top.set_xlabel("recall")
        if j == 0:
            top.set_ylabel("precision")
        top.legend(fontsize=6, title="held out: AUPR", title_fontsize=6, loc="upper right", ncol=2)
        if inl:
            a, b = np.concatenate(inl), np.concatenate(outl)
            lo, hi = np.percentile(np.r_[a, b], [0.5, 99.5])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 50)
            bottom.hist(np.clip(a, lo, hi), bins=bins, density=True, alpha=0.55, label="in-distribution")
            bottom.hist(np.clip(b, lo, hi), bins=bins, density=True, alpha=0.55, label="held-out digit")
            bottom.set_xlabel("score, standardized per digit (higher = more OOD)", fontsize=8)
            bottom.legend(fontsize=7)
        if j == 0:
            bottom.set_ylabel("density")
    fig.suptitle(f"{name}: one MNIST digit held out (dashed: positive rate)", fontsize=10)
    fig.tight_layout()
    tmp = f"{path}.tmp"
    try:
        fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
    os.replace(tmp, path)
    return path
