"""The generator in MLflow: logged by the training run as a model `mlflow models serve` answers
(gantrack.tracking.serving); in the Model Registry, each evaluated generator becomes a version of
one registered model; the `champion` alias points at the version with the best FID among
comparable ones.

Comparable means the same FID (same feature extractor with the same weights, same number of
generated samples) on the same data: a version is tagged with all four, and the alias moves only
when a new version beats the champion on an equal footing (a classifier retrained with other
params or another seed is another yardstick). Load the champion anywhere with
`gantrack sample --model models:/NAME@champion` (load_generator: only its .keras archive, no
code from the store runs) or serve it with `mlflow models serve -m models:/NAME@champion`.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML, YAMLError

from gantrack import tracking
from gantrack.io import files, keras_files, limits
from gantrack.runtime.errors import UserError, one_line
from gantrack.tracking import selection

logger = logging.getLogger(__name__)
ALIAS = "champion"
ARTIFACT = "generator"  # the run's logged generator (log_generator)
EXTRACTOR_TAG = "gantrack.extractor_sha256"  # the extractor's weights (also on the run)
FOOTING = ("gantrack.fid_metric", "gantrack.n_generated", "gantrack.dataset", EXTRACTOR_TAG)
FID_TAG = "gantrack.fid"


def register_generator(
    run_id: str,
    model_name: str,
    metric: str,
    fid: float,
    n_generated: int,
    dataset: str,
    extractor_sha256: str,
) -> tuple[int | None, bool]:
    """Register the generator of the training run run_id under model_name, evaluated on this
    footing to this FID (once: a rerun finds its version; another footing or FID is a new
    version, the earlier ones' tags untouched), and move the champion alias to it when it beats
    the champion comparably. Returns (version, whether it is the champion); (None, False) with a
    warning when the run or its generator is gone from the store (deleted in the UI).
    """
    client = MlflowClient()
    footing = dict(zip(FOOTING, (metric, str(n_generated), dataset, extractor_sha256),
                       strict=True))  # fmt: skip
    try:
        version = _version_of(client, model_name, run_id, {**footing, FID_TAG: repr(float(fid))})
    except MlflowException as exc:
        logger.warning("%s: the generator of run %s cannot be registered (%s)", model_name,
                       run_id, str(exc).splitlines()[0])  # fmt: skip
        return None, False
    champion = _champion(client, model_name)
    if champion is not None and int(champion.version) == version:
        return version, True
    if champion is not None:
        theirs = {key: champion.tags.get(key) for key in FOOTING}
        if theirs != footing:
            logger.warning("%s: version %s is not comparable with the champion (version %s: "
                           "%s); the alias stays", model_name, version, champion.version,
                           theirs)  # fmt: skip
            return version, False
        best = _number(champion.tags.get(FID_TAG))
        if best is None:
            logger.warning("%s: the champion (version %s) has no readable %s tag; the alias "
                           "stays", model_name, champion.version, FID_TAG)  # fmt: skip
            return version, False
        if fid >= best:
            logger.info("%s: version %s (%s %.4g) does not beat the champion, version %s "
                        "(%.4g)", model_name, version, metric, fid, champion.version,
                        best)  # fmt: skip
            return version, False
    client.set_registered_model_alias(model_name, ALIAS, version)
    logger.info("%s: version %s (%s %.4g) is the champion", model_name, version, metric, fid)
    return version, True


def log_generator(generator, *, class_names=None, name: str = ARTIFACT, **log_model_args) -> None:
    """Log the generator as an MLflow model that `mlflow models serve` answers (see
    gantrack.tracking.serving), once per run: models from code (the code file serving.SERVED_CODE,
    nothing pickled), the generator as a .keras artifact, the request params in its signature,
    an input example, and metadata (latent size, classes and their names, image shape).

    class_names: the data's class names (meta.json), else "0".."K-1". Other keyword arguments go
    to mlflow.pyfunc.log_model. pip requirements are given explicitly: inferring them imports
    and scans the environment (~5 s), naming them takes well under a second.
    """
    import keras
    import PIL
    import tensorflow as tf

    from gantrack.tracking import serving

    if _logged_generator(MlflowClient(), mlflow.active_run().info.run_id, name):
        return  # a rerun after a stop at the very end: the run holds it already
    metadata = serving.describe(generator, class_names)
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}",
                    f"mlflow=={mlflow.__version__}", f"pillow=={PIL.__version__}",
                    *_gantrack_requirement()]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gantrack-generator-") as tmp:
        archive = Path(tmp) / serving.ARCHIVE
        generator.save(archive)
        mlflow.pyfunc.log_model(
            name=name,
            python_model=str(serving.SERVED_CODE),
            artifacts={serving.ARTIFACT: str(archive)},
            signature=serving.SIGNATURE,
            input_example=serving.input_example(metadata),
            metadata=metadata,
            model_config={"class_names": list(metadata["class_names"])},
            pip_requirements=requirements,
            tags=tracking.masked_context_tags(),  # the inferred tags, secrets masked
            **log_model_args,
        )


def _gantrack_requirement() -> list[str]:
    """gantrack itself, which the served code imports (none when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return [f"gantrack=={version('gantrack')}"]
    except PackageNotFoundError:
        return []


def _version_of(client: MlflowClient, model_name: str, run_id: str, tags: dict) -> int:
    """The version registered from run_id's generator with these tags, registering a new one
    (tags and description written with it, once) if there is none."""
    found = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    for version in sorted(found, key=lambda v: int(v.version)):
        if all(version.tags.get(k) == v for k, v in tags.items()):
            return int(version.version)
    # MLflow 3 keeps logged models beside the run's artifacts: registering runs:/RUN/generator
    # would warn and resolve to the same models:/<id>.
    model_id = _logged_generator(client, run_id)
    if model_id is None:
        raise MlflowException(f"run {run_id} has no logged model named {ARTIFACT!r}")
    run = client.get_run(run_id)
    chosen = {k: v for k, v in run.data.tags.items() if k in selection.CHOICE_TAGS}
    _registered_model(client, model_name)
    return int(client.create_model_version(
        model_name, f"models:/{model_id}", run_id=run_id, tags={**tags, **chosen},
        description=selection.describe(run, tags, FOOTING, FID_TAG), model_id=model_id,
    ).version)  # fmt: skip


def _number(text: str | None) -> float | None:
    """text as a finite number (a tag another user of the store may have changed), or None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _registered_model(client: MlflowClient, model_name: str) -> None:
    """Create the registered model model_name unless it exists."""
    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def _logged_generator(client: MlflowClient, run_id: str, name: str = ARTIFACT) -> str | None:
    """The id of the model named name run_id logged and completed (the last, should there be
    several), or None: deleted models (the worse epochs') and half logged ones do not count."""
    return selection.ready_model(client, run_id, name)


MAX_MLMODEL_BYTES = 2**20


def load_generator(uri: str):
    """The generator behind a models:/ or runs:/ URI, downloaded from the configured store and
    loaded without running code from it: its MLmodel is read as data, then only its .keras
    archive is loaded (checked by keras_files, then Keras' safe mode), from gantrack's served
    model (see gantrack.tracking.serving; its code file is never run) or an MLflow Keras model
    saved as a .keras archive (not an exported SavedModel). Raises UserError (one line) for
    anything else."""
    what = f"--model: {uri}"
    with tempfile.TemporaryDirectory(prefix="gantrack-model-") as tmp:
        archive = _keras_archive(_download(uri, Path(tmp), what), what)
        return keras_files.load(archive, what, inputs=2)


def served_copy(uri: str, dst: Path) -> Path:
    """A checked copy in dst of gantrack's served generator behind uri, for a model server to
    load: its code file gantrack's byte for byte, no code paths for MLflow to import from, its
    .keras archive checked. A server started on the copy runs no code from the store, whatever
    the store holds by then. Raises UserError (one line) for any other model."""
    what = f"--model: {uri}"
    local = _download(uri, dst, what)
    pyfunc = _flavors(local, what).get("python_function")
    if not isinstance(pyfunc, dict) or "model_code_path" not in pyfunc:
        raise UserError(f"{what} is not a generator gantrack logged for serving (models from "
                        "code); `gantrack serve` serves only those")  # fmt: skip
    if pyfunc.get("code"):
        raise UserError(f"{what}: its MLmodel adds code paths ({pyfunc['code']!r}) for MLflow to "
                        "import from; gantrack's served generator has none")  # fmt: skip
    keras_files.check(_served_archive(local, pyfunc, what), what, inputs=2)
    return local


MAX_MODEL_BYTES = 2**30  # a model folder's files together (a generator's: a few MB)
MAX_MODEL_FILES = 1000
LISTING_SLACK = 2**20  # what a download may write beyond the listed sizes (MLflow's own files)


def _download(uri: str, dst: Path, what: str) -> Path:
    """The model folder behind uri, downloaded into dst once its listing shows it is no larger
    than a model (MAX_MODEL_BYTES, MAX_MODEL_FILES), and stopped should the store send more
    than it listed (a store's files are hostile too)."""
    try:
        listed = _check_listing(uri.rstrip("/"), what)
        with files.capped_folder(dst, listed + LISTING_SLACK) as cap:
            try:
                local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))
            except (MlflowException, OSError):
                if not cap.exceeded:
                    raise
    except (MlflowException, OSError) as exc:
        raise UserError(f"{what}: cannot be downloaded ({one_line(exc)})") from None
    if cap.exceeded:
        raise UserError(f"{what}: the store sent more than the {limits.human(listed)} its "
                        "listing said; not loaded")  # fmt: skip
    return Path(local)


def _check_listing(uri: str, what: str) -> int:
    """The bytes of the files under uri, listed (not downloaded) folder by folder, within the
    limits (MAX_MODEL_BYTES when the store lists a file without its size)."""
    folders, count, size, unsized = [""], 0, 0, False
    while folders:
        folder = folders.pop()
        for info in mlflow.artifacts.list_artifacts(artifact_uri=f"{uri}/{folder}".rstrip("/")):
            name = info.path.rsplit("/", 1)[-1]
            if info.is_dir:
                folders.append(f"{folder}/{name}".lstrip("/"))
            unsized = unsized or (not info.is_dir and info.file_size is None)
            count, size = count + 1, size + (info.file_size or 0)
            if count > MAX_MODEL_FILES or size > MAX_MODEL_BYTES:
                raise UserError(f"{what}: its files hold more than {MAX_MODEL_FILES} entries or "
                                f"{MAX_MODEL_BYTES >> 20} MiB; a generator is a few files of a "
                                "few MB, so it is not downloaded")  # fmt: skip
    return MAX_MODEL_BYTES if unsized else size


def _keras_archive(local: Path, what: str) -> Path:
    """The .keras file inside a downloaded MLflow model folder, after checking its MLmodel
    names gantrack's served generator or the Keras flavor saved as a .keras archive."""
    flavors = _flavors(local, what)
    pyfunc = flavors.get("python_function")
    if "keras" not in flavors and isinstance(pyfunc, dict) and "model_code_path" in pyfunc:
        return _served_archive(local, pyfunc, what)
    keras_flavor = flavors.get("keras")
    if not isinstance(keras_flavor, dict):
        raise UserError(f"{what} is not a Keras model nor gantrack's served generator (its "
                        f"flavors: {', '.join(map(str, flavors)) or 'none'})")  # fmt: skip
    if keras_flavor.get("save_exported_model") or keras_flavor.get("data") != "data":
        raise UserError(f"{what} is saved as a TensorFlow SavedModel, whose ops would run while "
                        "it loads; gantrack loads only .keras archives")  # fmt: skip
    return _regular_file(local, "data/model.keras", what)


def _flavors(local: Path, what: str) -> dict:
    """The flavors of the MLmodel file in local, read as YAML data."""
    mlmodel = local / "MLmodel"
    if not local.is_dir() or not mlmodel.is_file():
        raise UserError(f"{what} is not an MLflow model (no MLmodel file); give a logged or "
                        "registered generator")  # fmt: skip
    if mlmodel.stat().st_size > MAX_MLMODEL_BYTES:
        raise UserError(f"{what}: its MLmodel file is larger than {MAX_MLMODEL_BYTES} bytes")
    try:
        spec = YAML(typ="safe", pure=True).load(mlmodel.read_text(encoding="utf-8"))
    except (YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise UserError(f"{what}: its MLmodel file is not valid YAML ({one_line(exc)})") from None
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    return flavors if isinstance(flavors, dict) else {}


def _served_archive(local: Path, pyfunc: dict, what: str) -> Path:
    """The .keras artifact of gantrack's served generator (models from code): its code file
    must be gantrack's, byte for byte, and is never run; its artifact the one log_generator
    writes, inside the model's folder."""
    from gantrack.tracking import serving

    code = serving.SERVED_CODE.name
    artifact = (pyfunc.get("artifacts") or {}).get(serving.ARTIFACT)
    expected = f"artifacts/{serving.ARCHIVE}"
    foreign = (
        pyfunc.get("loader_module") != "mlflow.pyfunc.loaders.code_model"
        or Path(str(pyfunc.get("model_code_path"))).name != code
        or _regular_file(local, code, what).read_bytes() != serving.SERVED_CODE.read_bytes()
    )
    if foreign:
        raise UserError(f"{what} is a python_function model whose code is not gantrack's served "
                        f"generator ({code}); gantrack loads only its own")  # fmt: skip
    if not isinstance(artifact, dict) or artifact.get("path") != expected:
        raise UserError(f"{what}: its MLmodel names no {expected} artifact; it is not a "
                        "generator gantrack logged")  # fmt: skip
    return _regular_file(local, expected, what)


def _regular_file(local: Path, relative: str, what: str) -> Path:
    """local/relative: a regular file inside local (no symlink on the way)."""
    path = local / relative
    if any(p.is_symlink() for p in (path, *path.parents) if local in p.parents or p == local):
        raise UserError(f"{what}: {relative} is a symbolic link; gantrack reads regular files")
    if not path.is_file():
        raise UserError(f"{what}: {relative} is missing or not a regular file")
    return path


def _champion(client: MlflowClient, model_name: str):
    try:
        return client.get_model_version_by_alias(model_name, ALIAS)
    except MlflowException:  # no alias yet
        return None
