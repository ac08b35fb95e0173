"""PNG figures of an evolution run (matplotlib, Agg backend: no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from evoq_run import MARGIN_BINS  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def training_curves(metrics_by_round, path):
    """reward_mean, kl, clip_fraction per global step; one line per round."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for t, rows in sorted(metrics_by_round.items()):
        steps = [r["step"] for r in rows]
        for ax, key in zip(axes, ("reward_mean", "kl", "clip_fraction")):
            ax.plot(steps, [r.get(key, np.nan) for r in rows], marker="o", ms=3, label=f"round {t}")
    for ax, title in zip(axes, ("mean reward", "KL to the reference (k3, per token)", "clip fraction")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return _save(fig, path)


def margin_histogram(margins_by_name, path):
    """Vote margins |K_x - K_y| / (K_x + K_y) of every voted pair."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(0, 1, 11)
    for name, m in margins_by_name.items():
        m = np.asarray(m, float)
        ax.hist(m[np.isfinite(m)], bins=bins, alpha=0.5, label=name)
    ax.set_xlabel("vote margin")
    ax.set_ylabel("pairs")
    ax.legend()
    return _save(fig, path)


def accuracy_vs_margin(stats_by_name, path):
    """Pseudo-label accuracy against the true order, per vote-margin bin (pairs with a known order)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    centres = [(lo + min(hi, 1.0)) / 2 for lo, hi in zip(MARGIN_BINS[:-1], MARGIN_BINS[1:])]
    for name, s in stats_by_name.items():
        acc = [b["accuracy"] for b in s["accuracy_by_margin"]]
        n = [b["n"] for b in s["accuracy_by_margin"]]
        if not acc:
            continue
        ax.plot(centres, acc, marker="o", label=name)
        for x, y, k in zip(centres, acc, n):
            if k:
                ax.annotate(str(k), (x, y), fontsize=7, textcoords="offset points", xytext=(0, 4))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("vote margin (bin centre; numbers = pairs)")
    ax.set_ylabel("pseudo-label accuracy")
    ax.legend(fontsize=8)
    return _save(fig, path)


def score_distributions(scores_by_round, path):
    """Histogram of the evaluation scores of each round's model."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(1, 5, 33)
    for t, s in sorted(scores_by_round.items()):
        s = np.asarray(s, float)
        ax.hist(s[np.isfinite(s)], bins=bins, alpha=0.45, label=f"round {t}")
    ax.set_xlabel("model score (c_score, 1-5)")
    ax.set_ylabel("images")
    ax.legend()
    return _save(fig, path)


def score_vs_truth(rows_by_round, path):
    """Model score against the ground truth (higher = better), one panel per round."""
    n = max(1, len(rows_by_round))
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.2), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, (t, rows) in zip(axes[0], sorted(rows_by_round.items())):
        h = np.array([r[1] for r in rows], float)
        m = np.array([r[2] for r in rows], float)
        ax.scatter(h + rng.uniform(-0.15, 0.15, len(h)), m, s=10, alpha=0.6)  # jitter: levels are discrete
        ax.set_title(f"round {t}")
        ax.set_xlabel("ground truth (higher = better)")
        ax.set_ylabel("model score")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def per_type_srcc(table, path):
    """Bars of per-distortion-type SRCC, one group per type, one bar per round."""
    types = sorted({k for per in table.values() for k in per})
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(types) + 1), 3.2))
    width = 0.8 / max(1, len(table))
    for n, (t, per) in enumerate(sorted(table.items())):
        vals = [per.get(k, {}).get("srcc", np.nan) for k in types]
        ax.bar(np.arange(len(types)) + n * width, np.nan_to_num(vals), width, label=f"round {t}")
    ax.set_xticks(np.arange(len(types)) + 0.4 - width / 2, types, rotation=20, fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("SRCC (NaN drawn as 0)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def early_stop(samples_used_by_name, K_by_name, path):
    """Samples drawn per pair (the lossless early stop stops before K when the vote is decided)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, used in samples_used_by_name.items():
        K = K_by_name[name]
        ax.hist(np.asarray(used), bins=np.arange(0.5, K + 1.5), alpha=0.5, label=f"{name} (K={K})")
    ax.set_xlabel("samples drawn per pair")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    return _save(fig, path)
