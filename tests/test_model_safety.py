"""Loading a model never runs code from it: crafted models in a real MLflow store and as files,
each refused by `gantrack sample` with one line before Keras or TensorFlow loads it."""

import json
import os
import shutil
import subprocess
import urllib.parse
import zipfile
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf
import tiny
from project import user_env

from gantrack.tracking import registry, serving

# Real processes (the CLI, an MLflow store): outside the fast loop (-m "not slow").
pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]


def _sample(project: Path, model: str, out: str = "grid.png") -> subprocess.CompletedProcess:
    env = {**user_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    command = ["gantrack", "sample", "--model", model, "-n", "4", "--out", out]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip


def _refused(proc, *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("gantrack sample: error: --model: "), line
    for needle in needles:
        assert needle in line, line
    return line


class _WritesOnLoad(tf.saved_model.experimental.TrackableResource):
    """A SavedModel resource whose initializer, run by tf.saved_model.load, writes a file."""

    def __init__(self, mark: str):
        self.mark = mark
        super().__init__()

    def _create_resource(self):
        return tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.string)

    def _initialize(self):
        tf.io.write_file(self.mark, "ran")
        return tf.constant(0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A project with a real sqlite MLflow store holding a good generator and crafted models,
    each registered as a version of its own name; yields (project, {name: marker file})."""
    project = tmp_path_factory.mktemp("store")
    (project / "params.yaml").write_text("data:\n  dataset: digits\n")
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_experiment("gantrack")
    generator = tiny.gan().sampler
    marks = {}
    with mlflow.start_run() as run:
        registry.log_generator(generator)
        mlflow.log_text("not a model", "grid.png")
        # A Keras model saved as an exported SavedModel whose loading runs a file write.
        folder = project / "exported"
        signature = mlflow.models.infer_signature(np.zeros((1, 8), np.float32))
        mlflow.keras.save_model(generator, folder, save_exported_model=True, signature=signature)
        shutil.rmtree(folder / "data" / "model")
        marks["exported"] = project / "exported-ran"
        module = tf.Module()
        module.resource = _WritesOnLoad(str(marks["exported"]))
        tf.saved_model.save(module, str(folder / "data" / "model"))
        mlflow.log_artifacts(str(folder), "exported")
        # A Lambda layer (Python bytecode) and a two-input model, as MLflow Keras models.
        noise = keras.Input((8,))
        lam = keras.Model(noise, keras.layers.Lambda(lambda x: x * 2)(noise))
        mlflow.keras.log_model(lam, name="lambda", pip_requirements=[])
        a, b = keras.Input((8,)), keras.Input((8,))
        two = keras.Model([a, b], keras.layers.Reshape((2, 2, 2))(keras.layers.Add()([a, b])))
        mlflow.keras.log_model(two, name="two_inputs", pip_requirements=[])
        # Another flavor: a pyfunc model, which MLflow would unpickle.
        mlflow.pyfunc.log_model(name="pyfunc", python_model=_Echo(), pip_requirements=[])
        # The generator as an older gantrack logged it: an MLflow Keras model.
        mlflow.keras.log_model(generator, name="keras_flavor", signature=signature,
                               pip_requirements=[])  # fmt: skip
        marks["foreign_code"] = project / "foreign-code-ran"
        marks["code_paths"] = project / "code-paths-ran"
        _crafted_served(project, run.info.run_id, lam, marks)
    run_id = run.info.run_id
    for name in ("exported",):
        mlflow.register_model(f"runs:/{run_id}/{name}", name)
    marks["run_id"] = run_id
    yield project, marks
    mlflow.set_tracking_uri(None)


def _crafted_served(project: Path, run_id: str, lam: keras.Model, marks: dict) -> None:
    """Copies of the run's served generator (models from code), each logged as an artifact
    folder: its code file foreign (it writes marks["foreign_code"] when run), its artifact
    path leaving the model's folder, its .keras artifact a Lambda model, a code path with a
    package named gantrack (it writes marks["code_paths"] when imported)."""
    good = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/generator",
                                                    dst_path=str(project / "good")))  # fmt: skip
    names = ("foreign_code", "escaping_artifact", "served_lambda", "code_paths", "padded")
    for name in names:
        shutil.copytree(good, project / name)
    code = "from pathlib import Path\nPath({!r}).write_text('ran')\n"
    served = serving.SERVED_CODE.read_text()
    (project / "foreign_code" / "served.py").write_text(code.format(str(marks["foreign_code"]))
                                                         + served)  # fmt: skip
    package = project / "code_paths" / "code" / "gantrack"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(code.format(str(marks["code_paths"])))
    mlmodel = project / "code_paths" / "MLmodel"
    text = mlmodel.read_text()
    assert text.count("    code: null\n") == 1  # python_function's code paths: none
    mlmodel.write_text(text.replace("    code: null\n", "    code: code\n"))
    mlmodel = project / "escaping_artifact" / "MLmodel"
    escaping = mlmodel.read_text().replace("path: artifacts/", "path: artifacts/../../")
    mlmodel.write_text(escaping)
    lam.save(project / "served_lambda" / "artifacts" / "generator.keras")
    for name in names:
        mlflow.log_artifacts(str(project / name), name)
    # Written into the store by someone else: a sparse 2 GiB file beside the model (no disk).
    stored = Path(urllib.parse.urlparse(mlflow.get_artifact_uri("padded")).path)
    with open(stored / "padding.bin", "wb") as padding:
        padding.truncate(2 * 2**30)


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.mark.parametrize("artifact", ["generator", "keras_flavor"])
def test_a_good_generator_loads_from_runs_and_models_uris(store, artifact):
    """The served generator gantrack logs, and a Keras model as older versions logged it."""
    project, marks = store
    proc = _sample(project, f"runs:/{marks['run_id']}/{artifact}", f"{artifact}.npz")
    assert proc.returncode == 0, proc.stderr
    with np.load(project / f"{artifact}.npz") as npz:
        assert npz["images"].shape == (4, 8, 8, 1)


def test_a_served_model_with_foreign_code_runs_nothing(store):
    """MLflow's own loader runs a served model's code file (the mark appears); gantrack
    compares it with its own as data and refuses it before anything runs."""
    project, marks = store
    mark = marks["foreign_code"]
    _refused(_sample(project, f"runs:/{marks['run_id']}/foreign_code"), "not gantrack's")
    assert not mark.exists()
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.pyfunc.load_model(f"runs:/{marks['run_id']}/foreign_code")  # what gantrack must not do
    assert mark.exists()
    mark.unlink()


def _serve(project: Path, model: str) -> subprocess.CompletedProcess:
    env = {**user_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    command = ["gantrack", "serve", "--model", model, "--port", "1"]  # refused before it listens
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip


@pytest.mark.parametrize(
    ("artifact", "needle"),
    [
        ("foreign_code", "code is not gantrack's served generator"),
        ("code_paths", "adds code paths"),
        ("escaping_artifact", "names no artifacts/generator.keras"),
        ("served_lambda", "Lambda"),
        ("padded", "more than 1000 entries or 1024 MiB"),
        ("pyfunc", "not a generator gantrack logged for serving"),
        ("keras_flavor", "not a generator gantrack logged for serving"),
    ],
)
def test_gantrack_serve_refuses_all_but_its_own_served_generator(store, artifact, needle):
    """`mlflow models serve` straight from the store runs the model's code file (as load_model
    does above); `gantrack serve` checks a copy first, and anything but gantrack's own served
    generator is one line, exit 2, before a server starts or any of the model's code runs."""
    project, marks = store
    proc = _serve(project, f"runs:/{marks['run_id']}/{artifact}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("gantrack serve: error: --model: ") and needle in line, line
    assert not marks["foreign_code"].exists() and not marks["code_paths"].exists()


def test_a_savedmodel_from_the_registry_runs_nothing(store):
    """MLflow's own loader runs the crafted model's ops (the file appears); gantrack refuses
    it by its MLmodel before TensorFlow loads anything."""
    project, marks = store
    mark = marks["exported"]
    proc = _sample(project, "models:/exported/1")
    _refused(proc, "SavedModel")
    assert not mark.exists()
    assert not (project / "grid.png").exists()
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.keras.load_model("models:/exported/1")  # what gantrack must not do
    assert mark.exists()
    mark.unlink()


@pytest.mark.parametrize(
    ("artifact", "needles"),
    [
        ("lambda", ("keras.layers.Lambda", "not a built-in Keras layer")),
        ("two_inputs", ("not a generator", "2 input(s)")),
        ("pyfunc", ("not a Keras model", "python_function")),
        ("foreign_code", ("code is not gantrack's served generator (served.py)",)),
        ("escaping_artifact", ("names no artifacts/generator.keras artifact",)),
        ("served_lambda", ("keras.layers.Lambda", "not a built-in Keras layer")),
        ("grid.png", ("not an MLflow model",)),
        ("nothing-here", ("cannot be downloaded",)),
    ],
)
def test_models_that_are_not_plain_keras_generators_are_one_line(store, artifact, needles):
    project, marks = store
    _refused(_sample(project, f"runs:/{marks['run_id']}/{artifact}"), *needles)
    assert not (project / "grid.png").exists()


def _rewrite_config(src: Path, dst: Path, change) -> None:
    """A copy of the .keras archive src whose config.json is change(config)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                data = json.dumps(change(json.loads(data))).encode()
            zout.writestr(item, data)


def _foreign_module(config):
    config["config"]["layers"][1]["module"] = "os"
    config["config"]["layers"][1]["class_name"] = "system"
    return config


def _registered_custom(config):
    config["config"]["layers"][1]["registered_name"] = "evil>Dense"
    return config


def _wide_dense(config):
    """Input(20000) into a Dense(20000): 1.6 GB of variables declared by a few bytes of config
    (the weights file still holds the tiny generator's)."""
    layers = config["config"]["layers"]
    layers[0]["config"]["batch_shape"] = [None, 20000]
    at = next(i for i, layer in enumerate(layers) if layer["class_name"] == "Dense")
    layers[at]["config"]["units"] = 20000
    layers[at]["build_config"]["input_shape"] = [None, 20000]
    layers[at]["inbound_nodes"][0]["args"][0]["config"]["shape"] = [None, 20000]
    del layers[at + 1 :]  # the Dense is the output
    config["config"]["output_layers"] = [[layers[at]["name"], 0, 0]]
    return config


def _after_output(config, class_name: str, layer_config: dict):
    """config with a layer of class_name (named by layer_config) applied to the tiny
    generator's (8, 8, 1) output, as the new output."""
    layers, name = config["config"]["layers"], layer_config["name"]
    layers.append({"module": "keras.layers", "class_name": class_name, "name": name,
                   "config": layer_config, "registered_name": None,
                   "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {
                       "shape": [None, 8, 8, 1], "dtype": "float32",
                       "keras_history": [layers[-1]["name"], 0, 0]}}], "kwargs": {}}]})  # fmt: skip
    config["config"]["output_layers"] = [[name, 0, 0]]
    return config


def _huge_output(config):
    """The output upsampled 4096 times per side: ~10**9 values per noise row at sampling."""
    return _after_output(config, "UpSampling2D", {"name": "up", "size": [4096, 4096],
                         "data_format": "channels_last", "interpolation": "nearest"})  # fmt: skip


def _wide_encoding(config):
    """A CategoryEncoding of 10**8 classes after the output: no variables, 25 GB per row."""
    return _after_output(config, "CategoryEncoding", {"name": "wide", "num_tokens": 10**8,
                         "output_mode": "count", "sparse": False})  # fmt: skip


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (_foreign_module, "uses os.system"),
        (_registered_custom, "uses evil>Dense"),
        (_wide_dense, "of variables and its model.weights.h5 holds"),
        (
            _huge_output,
            "uses keras.layers.UpSampling2D, which gantrack's generators and "
            "classifiers are not made of",
        ),
        (_wide_encoding, "its layer wide outputs (8, 8, 100000000) per input row"),
    ],
)
def test_crafted_keras_files_are_refused_before_keras_reads_them(tmp_path, change, needle):
    good = tmp_path / "good.keras"
    tiny.gan().sampler.save(good)
    crafted = tmp_path / "crafted.keras"
    _rewrite_config(good, crafted, change)
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    _refused(_sample(tmp_path, str(crafted)), needle)


def test_a_zip_behind_an_hdf5_model_named_h5_loads_only_as_the_checked_zip(tmp_path):
    """Keras picks its loader by the file's name: an HDF5 model (two inputs here) with a good
    .keras archive appended, named .h5, passes the zip's checks; what loads is the checked
    archive, never the HDF5 model in front of it."""
    from gantrack.io import keras_files

    a, b = keras.Input((8,)), keras.Input((8,))
    two = keras.Model([a, b], keras.layers.Reshape((2, 2, 2))(keras.layers.Add()([a, b])))
    two.save(tmp_path / "two.h5")
    tiny.gan().sampler.save(tmp_path / "good.keras")
    both = tmp_path / "both.h5"
    both.write_bytes((tmp_path / "two.h5").read_bytes() + (tmp_path / "good.keras").read_bytes())
    loaded = keras_files.load(both, str(both), inputs=2)
    assert len(loaded.inputs) == 1 and tuple(loaded.inputs[0].shape) == (None, 8)


def test_an_archive_whose_weights_do_not_fit_its_layers_is_one_line(tmp_path):
    """Weights of a wider generator in a narrower one's archive: Keras warns (several lines)
    and fails; gantrack says it in one line."""
    import dataclasses

    good, wider = tmp_path / "good.keras", tmp_path / "wider.keras"
    tiny.gan().sampler.save(good)
    model = dataclasses.replace(tiny.MODEL, generator=dataclasses.replace(
        tiny.MODEL.generator, filters=2 * tiny.MODEL.generator.filters))  # fmt: skip
    tiny.gan(model).sampler.save(wider)
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(wider) as zw, \
            zipfile.ZipFile(crafted, "w") as zout:  # fmt: skip
        for item in zin.infolist():
            source = zw if item.filename == "model.weights.h5" else zin
            zout.writestr(item, source.read(item.filename))
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    _refused(_sample(tmp_path, str(crafted)), "cannot be loaded as a Keras model")


def test_a_refused_model_leaves_keras_nothing_to_allocate_later(tmp_path):
    """A bomb is built without its values to be refused; its variables stay uninitialised and
    are not left in Keras' list of deferred variables, which a later stateless scope would
    initialise (gigabytes then)."""
    from keras.src.backend.common import global_state

    from gantrack.io import keras_files
    from gantrack.runtime.errors import UserError

    good, bomb = tmp_path / "good.keras", tmp_path / "bomb.keras"
    tiny.gan().sampler.save(good)
    _rewrite_config(good, bomb, _wide_dense)
    with keras.StatelessScope():  # its exit leaves Keras' list of deferred variables: []
        pass
    before = global_state.get_global_attribute("uninitialized_variables")
    assert before == []
    with pytest.raises(UserError, match="of variables and its model.weights.h5 holds"):
        keras_files.load(bomb, "bomb")
    after = global_state.get_global_attribute("uninitialized_variables")
    assert after is before and not [v for v in after if 20000 in tuple(v.shape)]


def test_a_file_that_reads_past_its_size_is_one_line(tmp_path):
    """/proc files say size 0 and read on (pagemap: hundreds of GB): refused after one byte."""
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    _refused(_sample(tmp_path, "/proc/self/pagemap"), "reads on past the 0 bytes its size says")


def test_files_of_other_formats_are_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(64))
    _refused(_sample(tmp_path, "model.h5"), "not a .keras archive")


def test_a_trained_classifier_passes_the_checks_and_loads_unchanged(tmp_path):
    """The classifier stage saves a compiled, trained model (its optimizer and metrics in the
    archive's training configuration): it loads through every check."""
    from gantrack.config import ClassifierConfig
    from gantrack.evaluation import classifier
    from gantrack.io import keras_files

    images = tiny.random_images(64)
    labels = np.arange(64) % 3
    model, _ = classifier.train_classifier(ClassifierConfig(epochs=1, batch_size=32, filters=4),
                                           images, labels, images, labels)  # fmt: skip
    path = tmp_path / "classifier.keras"
    model.save(path)
    loaded = keras_files.load(path, str(path))
    x = images[:4].astype("float32") / 127.5 - 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-5)  # fmt: skip


@pytest.mark.parametrize("num_classes", [0, 3])
def test_gantrack_generators_pass_the_checks_and_load_unchanged(tmp_path, num_classes):
    """What gantrack itself saves (an unconditional or class-conditional generator, whose
    config holds tensor slices) loads through the checks with the same outputs."""
    from gantrack.gan import training
    from gantrack.io import keras_files

    keras.utils.set_random_seed(0)
    gan = training.build_gan(tiny.MODEL, tiny.train_cfg(), tiny.SHAPE, 0, num_classes=num_classes)
    path = tmp_path / "g.keras"
    gan.sampler.save(path)
    loaded = keras_files.load(path, str(path), inputs=2)
    noise = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(noise)), keras.ops.convert_to_numpy(gan.sampler(noise))
    )
