"""params.yaml -> frozen dataclasses, one per section, validated on load.

Every knob has a default here and is listed in params.yaml (a test checks both agree on the set
of keys). Library code receives these dataclasses; only the CLI reads params.yaml.
Validation errors are `UserError`s with one line: the dotted key, what is wrong, what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError

from gantrack.errors import UserError

DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "fashion_mnist": (28, 28, 1),
    "mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "digits": (8, 8, 1),
}
LOSSES = ("non_saturating", "minimax", "least_squares", "hinge", "wgan_gp")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")
EXTRACTORS = ("classifier", "inception", "auto")
MAX_LAYERS = 8
PRUNERS = ("median", "hyperband", "none")
# tune.space name -> the knob each trial sets (and `gantrack tune --apply` writes).
SEARCH_TARGETS = {
    "lr_g": "train.lr_g",
    "lr_d": "train.lr_d",
    "g_layers": "model.generator.layers",
    "d_layers": "model.discriminator.layers",
    "beta1_g": "train.beta1_g",
    "beta1_d": "train.beta1_d",
    "batch_size": "train.batch_size",
    "label_smoothing": "train.label_smoothing",
}
LOG_SCALE = ("lr_g", "lr_d")  # searched log-uniformly: bounds must be > 0


def knob(default: Any, *, ge=None, gt=None, le=None, lt=None, choices=None) -> Any:
    """A dataclass field with the range or choices its value must respect."""
    limits = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    return field(default=default, metadata={k: v for k, v in limits.items() if v is not None})


@dataclass(frozen=True)
class BaseConfig:
    seed: int = knob(42, ge=0)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = knob("fashion_mnist", choices=tuple(DATASET_SHAPES))
    source_dir: str | None = None
    limit: int | None = knob(None, ge=1)
    test_fraction: float = knob(0.2, gt=0.0, lt=1.0)

    @property
    def shape(self) -> tuple[int, int, int]:
        return DATASET_SHAPES[self.dataset]


@dataclass(frozen=True)
class GeneratorConfig:
    layers: int = knob(2, ge=1, le=MAX_LAYERS)
    filters: int = knob(32, ge=1)
    max_filters: int = knob(128, ge=1)


@dataclass(frozen=True)
class DiscriminatorConfig:
    layers: int = knob(2, ge=1, le=MAX_LAYERS)
    filters: int = knob(32, ge=1)
    max_filters: int = knob(128, ge=1)
    dropout: float = knob(0.3, ge=0.0, lt=1.0)
    spectral_norm: bool = False


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = knob(100, ge=1)
    kernel_size: int = knob(4, ge=1, le=7)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


@dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = knob(4, ge=1)
    batch_size: int = knob(128, ge=1)
    learning_rate: float = knob(1e-3, gt=0.0)
    filters: int = knob(16, ge=1)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = knob(5, ge=1)
    batch_size: int = knob(128, ge=1)
    loss: str = knob("non_saturating", choices=LOSSES)
    label_smoothing: float = knob(0.0, ge=0.0, lt=1.0)
    lr_g: float = knob(5.4e-4, gt=0.0)
    lr_d: float = knob(3.1e-4, gt=0.0)
    beta1_g: float = knob(0.5, ge=0.0, lt=1.0)
    beta1_d: float = knob(0.5, ge=0.0, lt=1.0)
    beta2_g: float = knob(0.999, ge=0.0, lt=1.0)
    beta2_d: float = knob(0.999, ge=0.0, lt=1.0)
    n_critic: int = knob(1, ge=1)
    gp_weight: float = knob(10.0, ge=0.0)
    ema_decay: float | None = knob(None, gt=0.0, lt=1.0)
    mixed_precision: bool = False
    strategy: str = knob("default", choices=STRATEGIES)
    sample_every: int = knob(10, ge=1)
    checkpoint_every: int = knob(1, ge=1)
    grid_rows: int = knob(8, ge=1, le=32)
    steps_per_execution: int = knob(1, ge=1)
    fid_every: int = knob(0, ge=0)
    fid_samples: int = knob(1000, ge=2)


@dataclass(frozen=True)
class GenerateConfig:
    n_samples: int = knob(10000, ge=2)
    seed: int = knob(1234, ge=0)
    batch_size: int = knob(500, ge=1)


@dataclass(frozen=True)
class EvaluateConfig:
    extractor: str = knob("classifier", choices=EXTRACTORS)
    inception_weights: str | None = None
    batch_size: int = knob(500, ge=1)
    kid_subsets: int = knob(100, ge=1)
    kid_subset_size: int = knob(1000, ge=2)
    is_splits: int = knob(10, ge=1)
    pr_k: int = knob(3, ge=1)
    seed: int = knob(0, ge=0)


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = "gantrack"


@dataclass(frozen=True)
class FloatRange:
    """Search bounds, low < high (both required)."""

    low: float
    high: float


@dataclass(frozen=True)
class IntRange:
    """Search bounds, low < high, both included (both required)."""

    low: int
    high: int


@dataclass(frozen=True)
class SpaceConfig:
    """What `gantrack tune` searches (see SEARCH_TARGETS); null: not searched, the knob's own
    value is used. Bounds are checked against the knob's own limits."""

    lr_g: FloatRange | None = field(default_factory=lambda: FloatRange(1e-5, 1e-3))
    lr_d: FloatRange | None = field(default_factory=lambda: FloatRange(1e-5, 1e-3))
    g_layers: IntRange | None = field(default_factory=lambda: IntRange(2, 4))
    d_layers: IntRange | None = field(default_factory=lambda: IntRange(1, 3))
    beta1_g: FloatRange | None = None
    beta1_d: FloatRange | None = None
    batch_size: tuple[int, ...] | None = None  # choices
    label_smoothing: FloatRange | None = None


@dataclass(frozen=True)
class TuneConfig:
    study_name: str = "gantrack"
    storage: str | None = None  # SQLAlchemy URL; None: sqlite:///<root>/tuning/optuna.db
    n_trials: int | None = knob(20, ge=1)  # per invocation (per worker)
    timeout: int | None = knob(None, ge=1)  # seconds, per invocation
    epochs: int = knob(2, ge=1)
    fid_every: int = knob(1, ge=1)
    fid_samples: int = knob(1000, ge=2)
    seed: int = knob(0, ge=0)
    pruner: str = knob("median", choices=PRUNERS)
    prune_startup_trials: int = knob(5, ge=0)
    prune_warmup_epochs: int = knob(0, ge=0)
    heartbeat_seconds: int = knob(60, ge=1)
    space: SpaceConfig = field(default_factory=SpaceConfig)


@dataclass(frozen=True)
class Config:
    base: BaseConfig = field(default_factory=BaseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


def scale_plan(height: int, width: int) -> tuple[int, int, int]:
    """How a DCGAN reaches (height, width) from a small feature map by 2x upsamplings.

    Returns (base_height, base_width, n): halve while both sides stay even and >= 4, so 28x28
    -> (7, 7, 2) and 32x32 -> (4, 4, 3). The discriminator mirrors it with n stride-2 convs.
    """
    n = 0
    while height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= 4:
        height, width, n = height // 2, width // 2, n + 1
    return height, width, n


def load(path: str | Path = "params.yaml") -> Config:
    """Read and validate params.yaml. Raises UserError with one line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such params file; run from the project root or pass --params")
    try:
        raw = YAML(typ="safe", pure=True).load(path.read_text())
    except YAMLError as exc:
        reason = str(exc).replace("\n", " ")
        raise UserError(f"{path}: not valid YAML ({reason})") from None
    return from_dict(raw or {})


def from_dict(raw: dict) -> Config:
    """Build a validated Config from a nested dict (sections -> keys -> values)."""
    cfg = _build(Config, raw, prefix="")
    _check_layers(cfg)
    _check_tune(cfg)
    return cfg


def set_dotted(raw: dict, key: str, value: Any) -> Any:
    """Set a dotted key ('train.lr_g') in a nested params dict, creating sections as needed;
    returns the value it replaced (None if it had none)."""
    *sections, name = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
    previous = node.get(name)
    node[name] = value
    return previous


def to_flat_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config into {'train.lr_g': 0.0002, ...} for logging as run params."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            flat.update(to_flat_dict(value, prefix=f"{key}."))
        else:
            flat[key] = value
    return flat


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "params"
    if not isinstance(raw, dict):
        raise UserError(f"{where}: must be a mapping of keys to values, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        allowed = ", ".join(fields)
        raise UserError(f"{prefix}{unknown[0]}: unknown key; allowed in {where}: {allowed}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        hint, key = hints[name], f"{prefix}{name}"
        nested = _dataclass_in(hint)
        if nested and not (value is None and nested is not hint):  # `X | None` may be null
            values[name] = _build(nested, value, prefix=f"{key}.")
        elif nested:
            values[name] = None
        else:
            values[name] = _check_value(key, _coerce(key, value, hint), fields[name].metadata)
    required = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in values]
    if missing:
        raise UserError(f"{prefix}{missing[0]}: missing; {where} needs: {', '.join(required)}")
    return cls(**values)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a type hint names (`X` or `X | None`), else None."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return next((k for k in kinds if dataclasses.is_dataclass(k)), None)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against a type hint (int, float, str, bool, tuple[X, ...], or X | None).
    A YAML list becomes a tuple, so configs stay hashable and frozen."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise UserError(f"{key}: must not be null")
    for kind in allowed:
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind in (str, bool) and isinstance(value, kind):
            return value
        if typing.get_origin(kind) is tuple and isinstance(value, list):
            item = typing.get_args(kind)[0]
            return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    names = " or ".join(
        "null" if k is type(None) else "list" if typing.get_origin(k) else k.__name__
        for k in allowed
    )
    raise UserError(f"{key}: must be {names}, got {value!r}")


def _check_value(key: str, value: Any, limits: typing.Mapping[str, Any]) -> Any:
    if value is None:
        return value
    if "choices" in limits and value not in limits["choices"]:
        raise UserError(f"{key}: unknown value {value!r}; allowed: {', '.join(limits['choices'])}")
    checks = {
        "ge": (lambda v, b: v >= b, ">="),
        "gt": (lambda v, b: v > b, ">"),
        "le": (lambda v, b: v <= b, "<="),
        "lt": (lambda v, b: v < b, "<"),
    }
    for name, (ok, symbol) in checks.items():
        if name in limits and not ok(value, limits[name]):
            raise UserError(f"{key}: {value!r} is out of range; must be {symbol} {limits[name]}")
    return value


def _check_layers(cfg: Config) -> None:
    """Layer counts must be able to reach the dataset's image size."""
    _check_generator_layers("model.generator.layers", cfg.model.generator.layers, cfg.data.shape)


def _check_generator_layers(key: str, g_layers: int, shape: tuple[int, int, int]) -> None:
    height, width, _ = shape
    base_h, base_w, n_up = scale_plan(height, width)
    if n_up == 0:
        raise UserError(f"data.dataset: {height}x{width} images cannot be built by 2x upsampling")
    if g_layers < n_up:
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
    searched = {n: getattr(t.space, n) for n in SEARCH_TARGETS if getattr(t.space, n) is not None}
    if not searched:
        raise UserError(f"tune.space: nothing to search; give one of: {', '.join(SEARCH_TARGETS)}")
    for name, value in searched.items():
        key = f"tune.space.{name}"
        if isinstance(value, tuple):
            if not value:
                raise UserError(f"{key}: no choices; give a list of values or null")
            bounds = {f"{key}[{i}]": v for i, v in enumerate(value)}
        else:
            bounds = {f"{key}.low": value.low, f"{key}.high": value.high}
            if value.low >= value.high:
                raise UserError(f"{key}: low {value.low!r} must be < high {value.high!r}")
        for bound_key, bound in bounds.items():
            if name in LOG_SCALE and bound <= 0:
                raise UserError(f"{bound_key}: {bound!r} is out of range; log scale needs > 0")
            _check_value(bound_key, bound, _limits(SEARCH_TARGETS[name]))
    if t.space.g_layers is not None:
        _check_generator_layers("tune.space.g_layers.low", t.space.g_layers.low, cfg.data.shape)


def _limits(dotted: str) -> typing.Mapping[str, Any]:
    """The knob() limits of a dotted key such as 'model.generator.layers'."""
    cls, *path, name = [Config, *dotted.split(".")]
    for part in path:
        cls = typing.get_type_hints(cls)[part]
    return next(f.metadata for f in dataclasses.fields(cls) if f.name == name)
