"""The generator in MLflow: logged as a Keras model with its signature by the training run;
in the Model Registry, each evaluated generator becomes a version of one registered model;
the `champion` alias points at the version with the best FID among comparable ones.

Comparable means the same FID (same feature extractor, same number of generated samples) on the
same data: a version is tagged with all three, and the alias moves only when a new version beats
the champion on an equal footing. Load the champion anywhere with
`mlflow.keras.load_model("models:/NAME@champion")` or
`gantrack sample --model models:/NAME@champion`.
"""

from __future__ import annotations

import logging

import keras
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)
ALIAS = "champion"
ARTIFACT = "generator"  # the run's logged generator (log_generator)
FOOTING = ("gantrack.fid_metric", "gantrack.n_generated", "gantrack.dataset")


def register_generator(
    run_id: str, model_name: str, metric: str, fid: float, n_generated: int, dataset: str
) -> tuple[int | None, bool]:
    """Register the generator of the training run run_id under model_name (once: a rerun finds
    its version) and move the champion alias to it when it beats the champion comparably.
    Returns (version, whether it is the champion); (None, False) with a warning when the run or
    its generator is gone from the store (deleted in the UI).
    """
    client = MlflowClient()
    try:
        version = _version_of(client, model_name, run_id)
    except MlflowException as exc:
        logger.warning("%s: the generator of run %s cannot be registered (%s)", model_name,
                       run_id, str(exc).splitlines()[0])  # fmt: skip
        return None, False
    footing = dict(zip(FOOTING, (metric, str(n_generated), dataset), strict=True))
    for key, value in {**footing, "gantrack.fid": repr(float(fid))}.items():
        client.set_model_version_tag(model_name, version, key, value)
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
        best = float(champion.tags["gantrack.fid"])
        if fid >= best:
            logger.info("%s: version %s (%s %.4g) does not beat the champion, version %s "
                        "(%.4g)", model_name, version, metric, fid, champion.version,
                        best)  # fmt: skip
            return version, False
    client.set_registered_model_alias(model_name, ALIAS, version)
    logger.info("%s: version %s (%s %.4g) is the champion", model_name, version, metric, fid)
    return version, True


def log_generator(generator) -> None:
    """Log the generator as an MLflow Keras model with its input signature.

    pip requirements are given explicitly: inferring them imports and scans the environment
    (~5 s), naming them takes well under a second.
    """
    import tensorflow as tf
    from mlflow.models import infer_signature

    noise = np.zeros((1, generator.input_shape[-1]), np.float32)
    signature = infer_signature(noise, generator(noise, training=False).numpy())
    mlflow.keras.log_model(
        generator,
        name=ARTIFACT,
        signature=signature,
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
    )


def _version_of(client: MlflowClient, model_name: str, run_id: str) -> int:
    """The version registered from run_id's generator, registering it if there is none."""
    found = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    if found:
        return max(int(v.version) for v in found)
    return int(mlflow.register_model(f"runs:/{run_id}/{ARTIFACT}", model_name).version)


def _champion(client: MlflowClient, model_name: str):
    try:
        return client.get_model_version_by_alias(model_name, ALIAS)
    except MlflowException:  # no alias yet
        return None
