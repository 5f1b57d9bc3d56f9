"""The sections of params.yaml as frozen dataclasses: every knob with its default and limits.

Every knob has a default here and is listed in params.yaml (a test checks both agree on the set
of keys). `schema.build` checks each value against its field's limits; checks that involve two
knobs are in config/checks.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from gantrack.config.schema import FloatRange, IntRange, knob, registry, searched
from gantrack.data.datasets import NAMES, lookup
from gantrack.data.folder import BAD_IMAGES
from gantrack.gan.geometry import MAX_LAYERS
from gantrack.gan.loss_traits import TRAITS as LOSS_TRAITS
from gantrack.runtime.errors import UserError

MAX_SEED = 2**32 - 1  # NumPy's and Keras' seeds are 32-bit
# What a knob may ask of memory: a network's widths, the noise, a batch, a sample count
# (1e6 as latent_dim or widths, 2e7 samples: gigabytes, then an OOM traceback)
MAX_FILTERS = 4096  # what max_filters auto picks at 1024x1024
MAX_LATENT = 1024
MAX_BATCH = 65536
MAX_SAMPLES = 200_000
# Names that MLflow, its search filters and URLs, and Optuna take as they are.
NAME = (r"[A-Za-z0-9][\w .\-/]{0,199}", "letters, digits, spaces and _ . - / (up to 200), "
        "starting with a letter or digit")  # fmt: skip
MODEL_NAME = (r"[A-Za-z0-9][\w.\-]{0,199}", "letters, digits and _ . - (up to 200), starting "
              "with a letter or digit")  # fmt: skip
# Knobs naming a registry entry accept its keys (read from its source, not imported).
STRATEGIES = registry("gantrack.gan.devices", "STRATEGIES")
AUGMENTS = registry("gantrack.gan.augment", "AUGMENTS")
EXTRACTORS = registry("gantrack.evaluation.extractors", "EXTRACTORS", also=("auto",))
PRUNERS = registry("gantrack.tuning.pruners", "PRUNERS")


@dataclass(frozen=True)
class BaseConfig:
    seed: int = knob(42, ge=0, le=MAX_SEED)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = knob("fashion_mnist", choices=NAMES)
    source_dir: str | None = None
    limit: int | None = knob(None, ge=1)
    test_fraction: float = knob(0.2, gt=0.0, lt=1.0)
    image_size: int | None = knob(None, ge=8, le=1024)  # folder: side of the square images
    channels: int | None = knob(None, choices=(1, 3))  # folder: None = from the images
    bad_images: str = knob("skip", choices=BAD_IMAGES)  # folder: unreadable files

    @property
    def shape(self) -> tuple[int, int, int]:
        """The images' shape: the dataset's, or a folder's from image_size and channels."""
        fixed = lookup(self.dataset).shape
        if fixed:
            return fixed
        if not self.image_size:
            raise UserError(f"data.image_size: required with data.dataset {self.dataset} (e.g. 64)")
        return (self.image_size, self.image_size, self.channels or 3)


@dataclass(frozen=True)
class GeneratorNetConfig:
    layers: int | str = knob("auto", ge=1, le=MAX_LAYERS, words=("auto",))
    filters: int = knob(32, ge=1, le=MAX_FILTERS)
    max_filters: int | str = knob("auto", ge=1, le=MAX_FILTERS, words=("auto",))
    conditional_bn: bool = True  # class-conditional: BatchNorm scale and offset per class
    activation: str = knob("relu", choices=("relu", "leaky_relu"))  # of each hidden layer


@dataclass(frozen=True)
class DiscriminatorNetConfig:
    layers: int | str = knob("auto", ge=1, le=MAX_LAYERS, words=("auto",))
    filters: int = knob(32, ge=1, le=MAX_FILTERS)
    max_filters: int | str = knob("auto", ge=1, le=MAX_FILTERS, words=("auto",))
    dropout: float = knob(0.0, ge=0.0, lt=1.0)
    spectral_norm: bool = False
    batch_norm: bool = True  # after every conv but the first (DCGAN paper)


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = knob(100, ge=1, le=MAX_LATENT)
    kernel_size: int = knob(5, ge=1, le=7)
    conditional: bool | str = knob("auto", choices=("auto", True, False))  # on data labels
    generator: GeneratorNetConfig = field(default_factory=GeneratorNetConfig)
    discriminator: DiscriminatorNetConfig = field(default_factory=DiscriminatorNetConfig)


@dataclass(frozen=True)
class ClassifierConfig:
    seed: int = knob(42, ge=0, le=MAX_SEED)  # its own: base.seed does not change the yardstick
    epochs: int = knob(2, ge=1)
    batch_size: int = knob(128, ge=1, le=MAX_BATCH)
    learning_rate: float = knob(1e-3, gt=0.0)
    filters: int = knob(16, ge=1, le=MAX_FILTERS)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = knob(4, ge=1)
    batch_size: int = knob(64, ge=1, le=MAX_BATCH)
    loss: str = knob("non_saturating", choices=tuple(LOSS_TRAITS))
    label_smoothing: float = knob(0.0, ge=0.0, lt=1.0)
    lr_g: float = knob(1e-3, gt=0.0)
    lr_d: float = knob(6e-4, gt=0.0)
    beta1_g: float = knob(0.0, ge=0.0, lt=1.0)
    beta1_d: float = knob(0.0, ge=0.0, lt=1.0)
    beta2_g: float = knob(0.99, ge=0.0, lt=1.0)
    beta2_d: float = knob(0.99, ge=0.0, lt=1.0)
    lr_decay: str = knob("linear", choices=("constant", "linear", "cosine"))
    lr_decay_to: float = knob(0.0, ge=0.0, lt=1.0)  # the rates' share left at the end
    n_critic: int = knob(1, ge=1)
    gp_weight: float = knob(10.0, ge=0.0)
    r1_gamma: float = knob(0.0, ge=0.0)  # R1 penalty on the reals; 0: off
    r1_every: int = knob(16, ge=1)  # lazy R1: discriminator steps between penalties
    ema_decay: float | None = knob(None, gt=0.0, lt=1.0)
    ema_warmup: float = knob(10.0, gt=1.0)  # EMA decay min(ema_decay, (1+t)/(ema_warmup+t))
    augment: tuple[str, ...] = knob(("translation", "cutout"), choices=AUGMENTS)  # DiffAugment
    augment_p: float | str = knob("adaptive", gt=0.0, le=1.0, words=("adaptive",))
    augment_target: float = knob(0.6, gt=0.0, lt=1.0)  # adaptive: E[sign(D(real) - boundary)]
    augment_images: int = knob(5000, ge=1)  # adaptive: images over which p can move by 1
    mixed_precision: bool | str = knob("auto", choices=("auto", True, False))
    strategy: str = knob("default", choices=STRATEGIES)
    sample_every: int = knob(1, ge=1)
    checkpoint_every: int = knob(1, ge=1)
    grid_rows: int = knob(8, ge=1, le=32)
    steps_per_execution: int = knob(1, ge=1, le=MAX_BATCH)
    fid_every: int = knob(1, ge=0)
    fid_samples: int = knob(1000, ge=2, le=MAX_SAMPLES)
    keep_best: int = knob(3, ge=1)  # the scored epochs whose generators are kept (best FID)
    select: str = knob("best", choices=("best", "last"))  # the generator the run ends with


@dataclass(frozen=True)
class GenerateConfig:
    n_samples: int = knob(10000, ge=2, le=MAX_SAMPLES)
    seed: int = knob(1234, ge=0, le=MAX_SEED)
    batch_size: int = knob(500, ge=1, le=MAX_BATCH)


@dataclass(frozen=True)
class EvaluateConfig:
    extractor: str = knob("auto", choices=EXTRACTORS)
    inception_weights: str | None = None
    inception_fid_graph: str | None = None
    batch_size: int = knob(500, ge=1, le=MAX_BATCH)
    kid_subsets: int = knob(100, ge=1)
    kid_subset_size: int = knob(1000, ge=2)
    is_splits: int = knob(10, ge=1)
    pr_k: int = knob(3, ge=1)
    seed: int = knob(0, ge=0, le=MAX_SEED)
    class_min_samples: int = knob(10, ge=2)


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = knob("gantrack", pattern=NAME)
    registered_model: str | None = knob("gantrack-generator", pattern=MODEL_NAME)
    system_metrics: bool = False


@dataclass(frozen=True)
class SpaceConfig:
    """What `gantrack tune` searches; null: not searched, the knob's own value is used. Bounds
    are checked against the knob's own limits."""

    lr_g: FloatRange | None = searched("train.lr_g", FloatRange(1e-5, 3e-3), log=True)
    lr_d: FloatRange | None = searched("train.lr_d", FloatRange(1e-5, 3e-3), log=True)
    g_layers: IntRange | None = searched("model.generator.layers", IntRange(2, 4))
    d_layers: IntRange | None = searched("model.discriminator.layers", IntRange(1, 3))
    beta1_g: FloatRange | None = searched("train.beta1_g")
    beta1_d: FloatRange | None = searched("train.beta1_d")
    batch_size: tuple[int, ...] | None = searched("train.batch_size")  # choices
    label_smoothing: FloatRange | None = searched("train.label_smoothing")
    r1_gamma: FloatRange | None = searched("train.r1_gamma", log=True)
    g_filters: tuple[int, ...] | None = searched("model.generator.filters")  # choices
    d_filters: tuple[int, ...] | None = searched("model.discriminator.filters")  # choices


# tune.space name -> the knob each trial sets; the names searched log-uniformly.
SEARCH_TARGETS = {f.name: f.metadata["target"] for f in dataclasses.fields(SpaceConfig)}
LOG_SCALE = tuple(f.name for f in dataclasses.fields(SpaceConfig) if f.metadata["log"])


@dataclass(frozen=True)
class TuneConfig:
    study_name: str = knob("gantrack", pattern=NAME)
    storage: str | None = None  # SQLAlchemy URL; None: sqlite:///<root>/tuning/optuna.db
    n_trials: int | None = knob(20, ge=1)  # per invocation (per worker)
    timeout: int | None = knob(None, ge=1)  # seconds, per invocation
    epochs: int = knob(2, ge=1)
    fid_every: int = knob(1, ge=1)
    seconds: int | None = knob(None, ge=1)  # equal-time trials: training seconds each, not epochs
    fid_every_seconds: int = knob(60, ge=1)  # with seconds: budget seconds between FIDs
    fid_samples: int = knob(1000, ge=2, le=MAX_SAMPLES)
    seed: int = knob(0, ge=0, le=MAX_SEED)
    pruner: str = knob("median", choices=PRUNERS)
    prune_startup_trials: int = knob(5, ge=0)
    prune_warmup_epochs: int = knob(0, ge=0)
    prune_warmup_seconds: int = knob(0, ge=0)  # with seconds: the median pruner's warm-up
    heartbeat_seconds: int = knob(60, ge=1)
    artifact_dir: str | None = knob(None, nonempty=True)  # None: <root>/tuning/artifacts
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


SECTIONS = [f.name for f in dataclasses.fields(Config)]
