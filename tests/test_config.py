import dataclasses
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from gantrack import config
from gantrack.config import schema
from gantrack.gan import geometry
from gantrack.runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _keys(obj, prefix=""):
    if dataclasses.is_dataclass(obj):
        out = set()
        for f in dataclasses.fields(obj):
            out |= _keys(getattr(obj, f.name), f"{prefix}{f.name}.")
        return out
    if isinstance(obj, dict):
        out = set()
        for k, v in obj.items():
            out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
        return out
    return {prefix.rstrip(".")}


def test_shipped_params_list_every_knob_with_the_default_value():
    raw = YAML(typ="safe").load((ROOT / "params.yaml").read_text())
    assert _keys(raw) == _keys(config.Config())
    assert config.load(ROOT / "params.yaml") == config.Config()


def test_yaml_1_2_floats_such_as_dvc_set_values_are_read_as_numbers(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr_g: 2e-4\n  epochs: 3\n")
    cfg = config.load(path)
    assert cfg.train.lr_g == pytest.approx(2e-4)
    assert cfg.train.epochs == 3
    assert cfg.train.lr_d == config.TrainConfig().lr_d


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"lr_gg": 1}}, r"train\.lr_gg: unknown key; allowed in train: epochs, "),
        ({"nope": {}}, r"nope: unknown key; allowed in params: base, data"),
        ({"train": {"epochs": "ten"}}, r"train\.epochs: must be int, got 'ten'"),
        ({"train": {"epochs": True}}, r"train\.epochs: must be int"),
        ({"train": {"epochs": 1.5}}, r"train\.epochs: must be int"),
        ({"train": {"epochs": 0}}, r"train\.epochs: 0 is out of range; must be >= 1"),
        ({"train": {"lr_g": 0}}, r"train\.lr_g: 0\.0 is out of range; must be > 0"),
        ({"train": {"label_smoothing": 1.0}}, r"label_smoothing: .* must be < 1"),
        (
            {"train": {"loss": "hinge", "label_smoothing": 0.1}},
            r"^train\.label_smoothing: only with train\.loss non_saturating or minimax \(BCE "
            r"targets\), not hinge$",
        ),
        (
            {
                "train": {"loss": "least_squares"},
                "tune": {"space": {"label_smoothing": {"low": 0.0, "high": 0.2}}},
            },
            r"^tune\.space\.label_smoothing: only with train\.loss non_saturating or minimax "
            r"\(BCE targets\), not least_squares$",
        ),
        ({"train": {"loss": "wgan"}}, r"train\.loss: unknown value 'wgan'; allowed: non_sat"),
        ({"data": {"dataset": "imagenet"}}, r"data\.dataset: unknown value 'imagenet'; allowed: "),
        ({"data": {"limit": -5}}, r"data\.limit: -5 is out of range"),
        ({"model": {"generator": {"layers": 1}}}, r"generator\.layers: 1 is too few for 28x28"),
        ({"model": {"generator": {"layers": 9}}}, r"generator\.layers: 9 is out of range"),
        ({"model": {"generator": 3}}, r"model\.generator: must be a mapping"),
        ({"train": {"epochs": None}}, r"train\.epochs: must not be null"),
        ({"train": {"strategy": "tpu"}}, r"train\.strategy: unknown value 'tpu'; allowed: defa"),
        ({"train": {"ema_decay": 1.0}}, r"train\.ema_decay: 1\.0 is out of range; must be < 1"),
        ({"train": {"ema_decay": 0}}, r"train\.ema_decay: 0\.0 is out of range; must be > 0"),
        ({"train": {"ema_warmup": 1}}, r"train\.ema_warmup: 1\.0 is out of range; must be > 1"),
        ({"train": {"n_critic": 0}}, r"train\.n_critic: 0 is out of range; must be >= 1"),
        ({"train": {"mixed_precision": "yes"}}, r"train\.mixed_precision: unknown value 'yes'"),
        ({"model": {"discriminator": {"spectral_norm": 1}}}, r"spectral_norm: must be bool"),
        (
            {"model": {"discriminator": {"batch_norm": True}}, "train": {"loss": "wgan_gp"}},
            r"model\.discriminator\.batch_norm: not with train\.loss wgan_gp \(a critic with the "
            r"gradient penalty\)$",
        ),
        (
            {
                "model": {"conditional": True, "discriminator": {"batch_norm": False}},
                "train": {"loss": "wgan_gp"},
            },
            r"model\.conditional: not with train\.loss wgan_gp \(a critic with the gradient "
            r"penalty\)$",
        ),  # fmt: skip
        (
            {"model": {"discriminator": {"batch_norm": False}}, "train": {"loss": "wgan_gp"}},
            r"train\.augment_p: adaptive steers by the loss's real/fake boundary, which a wgan_gp "
            r"critic does not have; give a probability \(e\.g\. 0\.2\)$",
        ),
        ({"model": {"conditional": "yes"}}, r"model\.conditional: unknown value 'yes'; allowed"),
        (
            {"model": {"generator": {"activation": "gelu"}}},
            r"model\.generator\.activation: unknown value 'gelu'; allowed: relu, leaky_relu",
        ),
        ({"train": {"lr_decay": "step"}}, r"train\.lr_decay: unknown value 'step'; allowed: co"),
        ({"train": {"lr_decay_to": 1}}, r"train\.lr_decay_to: 1\.0 is out of range; must be < 1"),
        ({"train": {"augment": ["color", "flip"]}}, r"augment: unknown value 'flip'; allowed: col"),
        ({"train": {"augment": ["cutout", "cutout"]}}, r"train\.augment: a value listed twice"),
        ({"train": {"augment": "cutout"}}, r"train\.augment: must be list, got 'cutout'"),
        ({"train": {"augment_p": 0}}, r"train\.augment_p: 0\.0 is out of range; must be > 0"),
        ({"train": {"augment_p": "ada"}}, r"augment_p: unknown value 'ada'; allowed: a number or"),
        ({"train": {"augment_target": 1}}, r"train\.augment_target: 1\.0 is out of range; must"),
        ({"train": {"augment_images": 0}}, r"train\.augment_images: 0 is out of range; must be"),
        (
            {"model": {"discriminator": {"layers": "deep"}}},
            r"discriminator\.layers: unknown value 'deep'; allowed: a number or auto",
        ),
        ({"model": {"generator": {"layers": 2.5}}}, r"generator\.layers: must be int or str, go"),
        (
            {"model": {"generator": {"max_filters": "wide"}}},
            r"generator\.max_filters: unknown value 'wide'; allowed: a number or auto",
        ),
        ({"model": {"discriminator": {"max_filters": 0}}}, r"max_filters: 0 is out of range"),
        ({"model": {"generator": {"conditional_bn": "on"}}}, r"conditional_bn: must be bool"),
        # What memory, NumPy's int64 and float32 cannot hold: one line, not an OOM traceback
        ({"model": {"latent_dim": 10**6}}, r"latent_dim: 1000000 is out of range; must be <= 1024"),
        ({"model": {"generator": {"filters": 10**5}}}, r"generator\.filters: 100000 is out of"),
        ({"classifier": {"filters": 10**6}}, r"classifier\.filters: 1000000 is out of range"),
        ({"generate": {"n_samples": 2 * 10**7}}, r"n_samples: 20000000 is out of range"),
        ({"evaluate": {"batch_size": 2**63}}, r"evaluate\.batch_size: 9223372036854775808 is out"),
        ({"train": {"epochs": 2**63}}, r"train\.epochs: 9223372036854775808 is out of range; must "
                                       r"be <= 2147483647"),
        ({"train": {"lr_g": 1e308}}, r"train\.lr_g: 1e\+308 is out of range; must be within "
                                     r"float32's \+-3\.402823e\+38"),
        ({"train": {"ema_warmup": 1e300}}, r"train\.ema_warmup: 1e\+300 is out of range"),
        ({"base": {"seed": 1, 5: 1, "x": 2}}, r"base\.5: unknown key; allowed in base: seed"),
        ({1: "a", None: "b", "zz": "c"}, r"1: unknown key"),
        ({"tune": {"artifact_dir": "/tmp/a\0b"}}, r"tune\.artifact_dir: must not hold a NUL byte"),
    ],
)  # fmt: skip
def test_bad_params_give_one_line_naming_the_key_and_what_is_allowed(raw, message):
    with pytest.raises(UserError, match=message) as info:
        config.from_dict(raw)
    assert "\n" not in str(info.value)


def test_label_smoothing_loads_with_the_bce_losses():
    for loss in ("non_saturating", "minimax"):
        cfg = config.from_dict({"train": {"loss": loss, "label_smoothing": 0.1}})
        assert cfg.train.label_smoothing == pytest.approx(0.1)


def test_cifar_needs_three_generator_layers_but_digits_one():
    cifar = {"data": {"dataset": "cifar10"}, "model": {"generator": {"layers": 2}}}
    with pytest.raises(UserError, match=r"allowed: 3 to 8 .* from 4x4"):
        config.from_dict(cifar)
    digits = config.from_dict(
        {"data": {"dataset": "digits"}, "model": {"generator": {"layers": 1}}}
    )
    assert digits.model.generator.layers == 1


def test_auto_layers_follow_the_image_size_and_numbers_stay_as_given():
    # one conv per 2x scale, at least 2: the discriminator ends where the generator starts
    sizes = {(8, 8): 2, (28, 28): 2, (32, 32): 3, (64, 64): 4, (128, 96): 4}
    for (height, width), layers in sizes.items():
        assert geometry.layer_count("auto", height, width) == layers
    assert geometry.layer_count(5, 28, 28) == 5
    cfg = config.from_dict({"data": {"dataset": "cifar10"}})  # auto reaches 32x32: no refusal
    assert cfg.model.generator.layers == cfg.model.discriminator.layers == "auto"


def test_scale_plan():
    assert geometry.scale_plan(28, 28) == (7, 7, 2)
    assert geometry.scale_plan(32, 32) == (4, 4, 3)
    assert geometry.scale_plan(8, 8) == (4, 4, 1)
    assert geometry.scale_plan(27, 27) == (27, 27, 0)


def test_missing_or_broken_params_file(tmp_path):
    with pytest.raises(UserError, match="no such params file"):
        config.load(tmp_path / "absent.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(UserError, match=r"not valid YAML \(expected ',' or '\]', but got"):
        config.load(broken)


def test_a_yaml_error_shows_no_excerpt_that_could_hold_a_password(tmp_path):
    """The parser's excerpt of an unclosed quote is cut before the '@' of a URL: the password
    was then printed, the URL no longer a shape masking knows. Only the problem and where."""
    password = "Xk9vQ2mLp8Rt4Wz7Nb3Yc6Hd1Fg5Js0"
    broken = tmp_path / "params.yaml"
    broken.write_text(f'tune:\n  storage: "postgresql://alice:{password}@db.example.com/optuna\n')
    with pytest.raises(UserError) as info:
        config.load(broken)
    message = str(info.value)
    assert "not valid YAML (found unexpected end of stream at line 3, column 1" in message
    assert password[:6] not in message and "alice" not in message


def test_flat_dict_names_params_by_dotted_path():
    flat = schema.to_flat_dict(config.Config())
    assert flat["train.lr_g"] == config.TrainConfig().lr_g
    assert flat["model.generator.layers"] == config.GeneratorNetConfig().layers


def test_a_dvc_experiment_name_is_masked_and_printable_as_a_run_name(monkeypatch):
    """DVC_EXP_NAME comes from the environment: no token or terminal escape reaches the run."""
    from gantrack import tracking

    token = "ghp_" + "a1B2c3D4e5" * 4
    monkeypatch.setenv("DVC_EXP_NAME", f"exp\x1b[2J-{token}")
    assert tracking.run_name("digits") == "exp\\x1b[2J-***"
    monkeypatch.delenv("DVC_EXP_NAME")
    assert tracking.run_name("digits").startswith("digits-")
