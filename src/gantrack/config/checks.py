"""Checks of params that involve more than one knob, run once every field is valid on its own.

Each raises a one-line `UserError` naming the knob to change and what is allowed.
"""

from __future__ import annotations

from gantrack.config import schema
from gantrack.config.sections import LOG_SCALE, SEARCH_TARGETS, Config
from gantrack.data.datasets import lookup
from gantrack.gan.geometry import MAX_LAYERS, scale_plan
from gantrack.gan.loss_traits import TRAITS as LOSS_TRAITS
from gantrack.runtime.errors import UserError


def run(cfg: Config) -> None:
    """Every check, in order: data, loss, networks, search, samples."""
    for check in (_check_data, _check_loss, _check_layers, _check_tune, _check_samples):
        check(cfg)


def _check_data(cfg: Config) -> None:
    """image_size and channels shape a folder of images; the named datasets have their own."""
    d = cfg.data
    if d.dataset == "folder" and not d.source_dir:
        raise UserError("data.source_dir: required with data.dataset folder (the folder of "
                        "your images)")  # fmt: skip
    for key in ("image_size", "channels"):
        if lookup(d.dataset).shape and getattr(d, key) is not None:
            h, w, c = lookup(d.dataset).shape
            raise UserError(f"data.{key}: only for folder and tfds:NAME; {d.dataset} images are "
                            f"{h}x{w}x{c}; set it to null")  # fmt: skip


def _check_loss(cfg: Config) -> None:
    """What the loss's traits rule out: a loss with the gradient penalty (a critic) takes it per
    sample, which BatchNorm in the critic breaks, and between two images of two classes, which
    have no label; a loss with no real/fake boundary gives adaptive augmentation nothing to
    steer by; label smoothing lowers the real targets of the BCE losses, which others lack."""
    loss, traits = cfg.train.loss, LOSS_TRAITS[cfg.train.loss]
    if not traits.label_smoothing:
        with_it = " or ".join(name for name, t in LOSS_TRAITS.items() if t.label_smoothing)
        searched = cfg.tune.space.label_smoothing is not None
        for key, on in (("train.label_smoothing", cfg.train.label_smoothing > 0),
                        ("tune.space.label_smoothing", searched)):  # fmt: skip
            if on:
                raise UserError(f"{key}: only with train.loss {with_it} (BCE targets), not "
                                f"{loss}")  # fmt: skip
    for key, on in (("discriminator.batch_norm", cfg.model.discriminator.batch_norm),
                    ("conditional", cfg.model.conditional is True)):  # fmt: skip
        if on and traits.gradient_penalty:
            raise UserError(f"model.{key}: not with train.loss {loss} (a critic with the "
                            "gradient penalty)")  # fmt: skip
    if traits.boundary is None and cfg.train.augment and cfg.train.augment_p == "adaptive":
        raise UserError(f"train.augment_p: adaptive steers by the loss's real/fake boundary, "
                        f"which a {loss} critic does not have; give a probability (e.g. "
                        "0.2)")  # fmt: skip


def _check_layers(cfg: Config) -> None:
    """The generator's layers must reach the image size."""
    _check_generator_layers("model.generator.layers", cfg.model.generator.layers, cfg.data.shape)


def _check_generator_layers(key: str, g_layers: int | str, shape: tuple[int, int, int]) -> None:
    height, width, _ = shape
    base_h, base_w, n_up = scale_plan(height, width)
    if n_up == 0:
        raise UserError(f"data.dataset: {height}x{width} images cannot be built by 2x upsampling")
    if g_layers != "auto" and g_layers < n_up:
        raise UserError(
            f"{key}: {g_layers} is too few for {height}x{width} images; "
            f"allowed: {n_up} to {MAX_LAYERS} (one per 2x upsampling from {base_h}x{base_w})"
        )


def _check_tune(cfg: Config) -> None:
    """A search must have a budget and a non-empty space whose every bound is a value the knob
    itself accepts, so that no trial can fail on params (errors come before any trial)."""
    t = cfg.tune
    if t.n_trials is None and t.timeout is None:
        raise UserError("tune.n_trials: null needs tune.timeout; give n_trials, timeout or both")
    schema.check_space("tune.space", t.space, Config, SEARCH_TARGETS, LOG_SCALE)
    if t.artifact_dir and "://" in t.artifact_dir:
        raise UserError(f"tune.artifact_dir: {t.artifact_dir!r} is a URL; give a folder (a shared "
                        "mount for workers on several machines) or null")  # fmt: skip


def _check_samples(cfg: Config) -> None:
    """The metrics' sample counts: precision/recall take each sample's pr_k-th nearest other
    sample, so more than pr_k."""
    if (k := cfg.evaluate.pr_k) >= (n := cfg.generate.n_samples):
        raise UserError(f"evaluate.pr_k: {k} needs more than {k} samples (generate.n_samples "
                        f"is {n}); allowed: 1 to {n - 1}")  # fmt: skip


def check_search_layers(cfg: Config) -> None:
    """tune.space.g_layers must reach the image size (checked by `gantrack tune` alone)."""
    if (layers := cfg.tune.space.g_layers) is not None:
        _check_generator_layers("tune.space.g_layers.low", layers.low, cfg.data.shape)
