"""params.yaml -> frozen dataclasses, one per section, validated on load.

The sections and their knobs are in sections.py (re-exported here), the checks that involve
more than one knob in checks.py, the typed fields and search bounds in schema.py. Library code
receives these dataclasses; only the CLI reads params.yaml. Validation errors are `UserError`s
with one line: the dotted key, what is wrong, what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAMLError

from gantrack.config import checks, schema
from gantrack.config.checks import check_search_layers
from gantrack.config.schema import FloatRange, IntRange
from gantrack.config.sections import (
    LOG_SCALE,
    MAX_SEED,
    SEARCH_TARGETS,
    SECTIONS,
    BaseConfig,
    ClassifierConfig,
    Config,
    DataConfig,
    DiscriminatorNetConfig,
    EvaluateConfig,
    GenerateConfig,
    GeneratorNetConfig,
    ModelConfig,
    SpaceConfig,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
)
from gantrack.io import limits
from gantrack.runtime.errors import UserError, one_line

__all__ = [
    "LOG_SCALE", "MAX_SEED", "SEARCH_TARGETS", "SECTIONS", "BaseConfig", "ClassifierConfig",
    "Config", "DataConfig", "DiscriminatorNetConfig", "EvaluateConfig", "FloatRange",
    "GenerateConfig", "GeneratorNetConfig", "IntRange", "ModelConfig", "SpaceConfig",
    "TrackingConfig", "TrainConfig", "TuneConfig", "check", "check_search_layers", "flat_params",
    "from_dict", "load",
]  # fmt: skip


def load(path: str | Path = "params.yaml") -> Config:
    """Read and validate params.yaml. Raises UserError with one line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such params file; run from the project root or pass --params")
    try:
        raw = limits.load_yaml(path)  # size, depth, aliases: checked before anything expands
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({one_line(exc)})") from None
    except YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if not raw:  # a run on nothing but defaults would overwrite a project's outputs
        raise UserError(f"{path}: empty; give at least one section ({', '.join(SECTIONS)})")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: must be a mapping of sections ({', '.join(SECTIONS)})")
    return from_dict(raw)


def _yaml_problem(exc: YAMLError) -> str:
    """What the parser found and where, without its excerpt of the file: the excerpt is cut at
    the problem, which can leave a password out of the URL shape that masking knows."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if not problem:
        return type(exc).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    context = getattr(exc, "context", None)
    return f"{problem}{where}" + (f", {context}" if context else "")


def from_dict(raw: dict) -> Config:
    """Build a validated Config from a nested dict (sections -> keys -> values)."""
    cfg = schema.build(Config, raw, prefix="")
    checks.run(cfg)
    return cfg


def flat_params(cfg: Config, *sections: str) -> dict[str, Any]:
    """The named sections of cfg flattened to {'train.lr_g': ..., ...} (run params)."""
    flat: dict[str, Any] = {}
    for section in sections:
        flat.update(schema.to_flat_dict(getattr(cfg, section), prefix=f"{section}."))
    return flat


def check(dotted: str, value: Any, label: str | None = None) -> Any:
    """Check a value given elsewhere (e.g. a command-line option) against the limits of the knob
    `dotted` ('evaluate.extractor'); errors name `label` (default: the knob)."""
    return schema.check_value(label or dotted, value, schema.limits(Config, dotted))
