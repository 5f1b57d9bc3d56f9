"""The best epoch kept and chosen, and a registry that never rewrites history: a real `dvc
repro` of a tiny project and its sqlite MLflow store."""

import json

import pytest
from project import mlflow_client, run, set_params

from gantrack.evaluation import extractors
from gantrack.io import keras_files

# Real processes (`dvc repro`): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow

NAME = "gantrack-generator"
FID = "fid_classifier_n100"


def _training_run(client, project):
    run_id = json.loads((project / "models/run.json").read_text())["run_id"]
    return client.get_run(run_id)


def _epoch_models(client, run_info) -> dict[int, object]:
    """{epoch: live per-epoch LoggedModel} of a run."""
    found = client.search_logged_models([run_info.info.experiment_id],
                                        f"source_run_id = '{run_info.info.run_id}'")  # fmt: skip
    models = [m for m in found if m.name.startswith("generator-epoch-")]
    assert len({m.name for m in models}) == len(models)  # each epoch once
    return {int(m.name.rsplit("-", 1)[1]): m for m in models}


def _fids(client, run_id) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, FID)}


@pytest.mark.slow
def test_the_best_epochs_are_kept_the_best_is_chosen_and_versions_are_never_rewritten(
    tiny_project,
):
    project = tiny_project({"train": {"epochs": 4, "keep_best": 2}})
    run(project, "dvc", "repro")
    client = mlflow_client(project)
    trained = _training_run(client, project)
    fids = _fids(client, trained.info.run_id)
    assert sorted(fids) == [1, 2, 3, 4]
    ranked = sorted(fids, key=lambda e: (fids[e], e))
    chosen = ranked[0]
    print("FID while training:", fids, "chosen:", chosen)
    # The chosen epoch is the lowest logged FID, recorded on the run.
    assert trained.data.tags["gantrack.chosen_epoch"] == str(chosen)
    assert trained.data.tags["gantrack.chosen_by"] == "best"
    assert trained.data.metrics["chosen_epoch"] == chosen
    # Only the best keep_best epochs' models remain, each linked to its step, metrics and data.
    models = _epoch_models(client, trained)
    assert sorted(models) == sorted(ranked[:2])
    outputs = {o.model_id: o.step for o in trained.outputs.model_outputs}
    for epoch, model in models.items():
        assert outputs[model.model_id] == epoch
        linked = {m.key: m for m in model.metrics}
        assert linked[FID].value == pytest.approx(fids[epoch]) and linked[FID].step == epoch
        assert linked[FID].dataset_name == "digits" and "g_loss" in linked
    # Every scored epoch was logged once (the worse ones then deleted), the final generator too.
    final = [i for i in outputs if client.search_logged_models(
        [trained.info.experiment_id], f"name = 'generator' AND source_run_id = "
        f"'{trained.info.run_id}'")[0].model_id == i]  # fmt: skip
    assert len(final) == 1 and outputs[final[0]] == chosen
    assert sorted(s for i, s in outputs.items() if i not in final) == [1, 2, 3, 4]
    assert not (project / "checkpoints").exists()  # the kept files go with the finished run

    # Registered from the LoggedModel, described.
    (v1,) = client.search_model_versions(f"name = '{NAME}'")
    assert v1.source.startswith("models:/m-") and v1.tags["gantrack.chosen_epoch"] == str(chosen)
    eval_fid = json.loads((project / "metrics/eval.json").read_text())["fid_classifier"]
    description = v1.description
    # The yardstick: the weights of the classifier that scored it, on the version and the run.
    classifier = keras_files.load(project / "models/classifier/classifier.keras", "classifier")
    weights = extractors.weights_sha256(classifier)
    assert v1.tags["gantrack.extractor_sha256"] == weights
    evaluated = json.loads((project / "data/generated/run.json").read_text())["run_id"]
    assert client.get_run(evaluated).data.tags["gantrack.extractor_sha256"] == weights
    for part in ("Data: digits (sha256 ", f"Extractor: classifier (weights sha256 {weights[:12]})",
                 "Samples: 300 generated", f"FID (fid_classifier): {eval_fid:.6g}",
                 f"Epoch: {chosen} of 4", f"{FID}="):  # fmt: skip
        assert part in description, description

    # Evaluated again on another sample count: a new version beside the first, which keeps its
    # tags; not comparable, so the champion stays.
    set_params(project, {"generate": {"n_samples": 200}})
    run(project, "dvc", "repro")
    v1_again = client.get_model_version(NAME, v1.version)
    assert v1_again.tags == v1.tags and v1_again.description == v1.description
    versions = client.search_model_versions(f"name = '{NAME}'")
    versions = sorted(versions, key=lambda v: int(v.version))
    assert [int(v.version) for v in versions] == [1, 2]
    assert versions[1].tags["gantrack.n_generated"] == "200" and versions[1].run_id == v1.run_id
    assert "Samples: 200 generated" in versions[1].description
    assert int(client.get_model_version_by_alias(NAME, "champion").version) == 1
    run(project, "gantrack", "evaluate")  # the same evaluation again: nothing new
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2

    # select: last ends with the last epoch.
    set_params(project, {"train": {"select": "last"}})
    run(project, "dvc", "repro")
    last = _training_run(client, project)
    assert last.info.run_id != trained.info.run_id
    assert last.data.tags["gantrack.chosen_epoch"] == "4"
    assert last.data.tags["gantrack.chosen_by"] == "last"
    newest = max(client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version))
    assert "Epoch: 4 of 4, the last (train.select last)." in newest.description
