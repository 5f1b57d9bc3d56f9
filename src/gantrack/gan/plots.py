"""Matplotlib figures for reports (headless: the Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def loss_curves(history: pd.DataFrame) -> plt.Figure:
    """Losses and mean discriminator outputs per epoch, from a history table
    (columns epoch, g_loss, d_loss, d_real, d_fake, and gp with WGAN-GP)."""
    fig, (ax_loss, ax_d) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for column in ("g_loss", "d_loss", "gp")[: 3 if "gp" in history else 2]:
        ax_loss.plot(history["epoch"], history[column], marker=".", label=column)
    for column, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        ax_d.plot(history["epoch"], history[column], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Losses")
    ax_d.set(xlabel="epoch", ylabel="mean sigmoid(logit)", title="Discriminator outputs")
    for ax in (ax_loss, ax_d):
        ax.legend()
        ax.grid(alpha=0.3)
    return fig
