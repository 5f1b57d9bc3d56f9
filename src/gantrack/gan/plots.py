"""Matplotlib figures for reports (headless: the Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def loss_curves(history: pd.DataFrame) -> plt.Figure:
    """Losses and mean discriminator outputs per epoch, from a history table (columns epoch,
    g_loss, d_loss, d_real, d_fake, gp with WGAN-GP, r1 with R1), and the FID while training
    when the table has one (a fid_* column)."""
    fids = [c for c in history.columns if c.startswith("fid_")]
    panels = 3 if fids else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), constrained_layout=True)
    ax_loss, ax_d = axes[:2]
    for column in [c for c in ("g_loss", "d_loss", "gp", "r1") if c in history]:
        ax_loss.plot(history["epoch"], history[column], marker=".", label=column)
    for column, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        ax_d.plot(history["epoch"], history[column], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Losses")
    ax_d.set(xlabel="epoch", ylabel="mean sigmoid(logit)", title="Discriminator outputs")
    if fids:
        for column in fids:
            rows = history[["epoch", column]].dropna()
            axes[2].plot(rows["epoch"], rows[column], marker=".", label=column)
        axes[2].set(xlabel="epoch", ylabel="FID (lower is better)", title="FID while training")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    return fig
