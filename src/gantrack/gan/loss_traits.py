"""What each loss of gan/losses.py asks of the rest of the GAN, without TensorFlow: config checks
params against it when they load, training builds the GAN from it. Adding a loss adds its entry
here and its functions in losses.LOSSES (a test checks both name the same losses)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Traits:
    """gradient_penalty: a critic that takes the WGAN-GP penalty, which is per sample (no
    BatchNorm in the critic) and taken between two images (no class to condition on);
    boundary: the discriminator output between what it calls real (above) and fake, which
    adaptive augmentation steers by (None: none, a critic's scores count only as differences);
    label_smoothing: its discriminator loss has targets that one-sided smoothing lowers."""

    gradient_penalty: bool = False
    boundary: float | None = 0.0
    label_smoothing: bool = False


TRAITS: dict[str, Traits] = {
    "non_saturating": Traits(label_smoothing=True),
    "minimax": Traits(label_smoothing=True),
    "least_squares": Traits(boundary=0.5),  # targets 1 (real) and 0 (fake)
    "hinge": Traits(),
    "wgan_gp": Traits(gradient_penalty=True, boundary=None),
}
