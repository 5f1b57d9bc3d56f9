"""evaluate: the samples against the reference -> metrics/eval.json (FID, KID, IS,
precision/recall, and for a class-conditional generator's samples the FID within each class
and their mean, intra-FID; named after the extractor, with the sample counts beside them),
printed as a table; the generator registered in the MLflow Model Registry
(gantrack.tracking.registry)."""

from __future__ import annotations

import logging

import mlflow

from gantrack import tracking
from gantrack.config import Config, flat_params
from gantrack.evaluation import extractors, scoring
from gantrack.io.files import read_json, write_json
from gantrack.io.paths import PATHS, Paths, require
from gantrack.runtime.errors import UserError
from gantrack.tracking import registry

logger = logging.getLogger(__name__)

# The params this stage reads: dvc.yaml lists them (a test checks), the CLI rechecks them.
PARAMS = ("evaluate", "tracking.experiment", "tracking.registered_model")


def run(cfg: Config, paths: Paths = PATHS) -> dict:
    """Score the samples; returns the metrics written to metrics/eval.json."""
    meta = read_json(require(paths.meta, "prepare"))
    fakes = scoring.load_samples(paths.samples, meta["shape"])
    labels = scoring.load_sample_labels(paths.samples, len(fakes))  # None: no per-class FID
    reference = f"the test split ({paths.reference})"
    scoring.check_counts(cfg.evaluate, (reference, meta["n_test"]), (paths.samples, len(fakes)))
    tracking.configure(cfg.tracking.experiment)  # an unusable store fails before any work
    e = cfg.evaluate
    name, extract = extractors.load_extractor(e, paths.classifier)
    ref_mu, ref_sigma, _ = scoring.load_reference(paths.reference, extractor=name)
    ref_feats = scoring.load_reference_features(paths.reference)
    feats, probs = extract(fakes, e.batch_size)
    results = scoring.score(name, ref_feats, feats, probs, e, reference_stats=(ref_mu, ref_sigma))
    ref_labels = scoring.load_reference_labels(paths.reference, len(ref_feats))
    if labels is not None and ref_labels is not None:  # intra-FID, with the same extractor
        results |= scoring.score_classes(name, ref_feats, ref_labels, feats, labels,
                                         e.class_min_samples)  # fmt: skip
    results |= _classifier_accuracy(require(paths.classifier_metrics, "classifier"))
    write_json(paths.eval_metrics, results)
    with tracking.continue_run(paths.generate_run, flat_params(cfg, "evaluate")):
        tracking.log_metrics_once(results)
        # The extractor's weights: FIDs measured with other weights are not comparable.
        mlflow.set_tag(registry.EXTRACTOR_TAG, extract.sha256)
    if cfg.tracking.registered_model:
        registry.register_generator(
            tracking.read_run_file(paths.train_run), cfg.tracking.registered_model, f"fid_{name}",
            results[f"fid_{name}"], results[f"n_generated_{name}"], meta["sha256"],
            extract.sha256,
        )  # fmt: skip
    print(scoring.table(results))
    return results


def _classifier_accuracy(path) -> dict[str, float]:
    """The classifier's test accuracy from its metrics file ({} without a classifier): only
    that key, a number in [0, 1], so that an edited file cannot stand in for a score."""
    accuracy = read_json(path).get("classifier_test_accuracy")
    if accuracy is None:
        return {}
    if (
        isinstance(accuracy, bool)
        or not isinstance(accuracy, int | float)
        or not 0 <= accuracy <= 1
    ):
        raise UserError(f"{path}: classifier_test_accuracy {accuracy!r} is not a number in "
                        "[0, 1]; run `dvc repro classifier` to rewrite it")  # fmt: skip
    return {"classifier_test_accuracy": float(accuracy)}
