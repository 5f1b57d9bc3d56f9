"""`gantrack tune` for real: tiny studies on digits, sqlite and PostgreSQL storage, MLflow runs."""

import contextlib
import copy
import html
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
from optuna.trial import TrialState
from project import (
    TINY,
    assert_no_file_holds,
    assert_nowhere,
    copy_tiny,
    merge,
    one_line_error,
    user_env,
    write_params,
)
from ruamel.yaml import YAML
from servers import PG_PASSWORD, free_port, mlflow_server, postgres_server

from gantrack import config, data
from gantrack.gan.geometry import layer_count
from gantrack.gan.inputs import steps_per_epoch
from gantrack.io.paths import PATHS
from gantrack.runtime.errors import UserError, printable
from gantrack.tuning import budget, objective, report
from gantrack.tuning import study as tuning

# Real processes (the CLI, `dvc repro`, servers): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUMS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
BIN = Path(sys.executable).parent
SPACE = {
    "lr_g": {"low": 1e-4, "high": 3e-3},
    "lr_d": {"low": 1e-4, "high": 3e-3},
    "g_layers": {"low": 1, "high": 2},
    "d_layers": {"low": 1, "high": 2},
}
# The project's TINY data, model and classifier (so the session's prepared project serves), a
# short study.
TUNE_TINY = {
    **{section: TINY[section] for section in ("data", "model", "classifier")},
    "train": {"batch_size": 64, "grid_rows": 4},
    "tune": {"epochs": 2, "fid_samples": 200, "n_trials": 4, "pruner": "none", "space": SPACE},
}


def _cfg(**tune) -> config.Config:
    return config.from_dict(merge(copy.deepcopy(TUNE_TINY), {"tune": tune}))


def _write_params(path: Path, tune: dict) -> Path:
    """The shipped params.yaml (comments and all) with TUNE_TINY and `tune` merged in."""
    return write_params(path, merge(copy.deepcopy(TUNE_TINY), {"tune": tune}))


def _gantrack(cwd: Path, *args: str, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["gantrack", *args], cwd=cwd, env=env or user_env(), capture_output=True,
                          text=True, **kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def project(tiny_built, tmp_path_factory):
    """A project with the prepare, classifier and reference outputs, as the cwd of the module's
    tests (tune runs in-process here, as `gantrack tune` would)."""
    root = copy_tiny(tiny_built, tmp_path_factory.mktemp("tune") / "project")
    _write_params(root / "params.yaml", {})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "DVC_ROOT"):
            mp.delenv(name, raising=False)
        yield root


def _mlflow(project: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def _runs(project: Path, study: str, client=None) -> tuple[list, list]:
    """(parent runs, child runs) of a study, oldest first, in the project's store or client's."""
    client = client or _mlflow(project)
    experiment = client.get_experiment_by_name("gantrack")
    runs = client.search_runs([experiment.experiment_id], f"tags.`optuna.study` = '{study}'",
                              order_by=["start_time ASC"])  # fmt: skip
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


@pytest.fixture(scope="module")
def tuned(project):
    """A finished 4-trial study (`main`) in the project's default sqlite storage."""
    return tuning.tune(_cfg(study_name="main"))


def test_study_stores_trials_tracks_them_in_mlflow_and_writes_reports(project, tuned):
    study = optuna.load_study(study_name="main", storage=f"sqlite:///{project}/tuning/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert {t.number for t in study.trials} == {0, 1, 2, 3}
    keys = {"train.lr_g", "train.lr_d", "model.generator.layers", "model.discriminator.layers"}
    assert all(set(t.params) == keys for t in study.trials)
    # The params before the search run first, once: the baseline.
    current = _cfg()
    shape = current.data.shape[:2]  # auto layer counts: the numbers they resolve to
    assert study.trials[0].params == {
        "train.lr_g": current.train.lr_g, "train.lr_d": current.train.lr_d,
        "model.generator.layers": layer_count(current.model.generator.layers, *shape),
        "model.discriminator.layers": layer_count(current.model.discriminator.layers, *shape),
    }  # fmt: skip
    assert [t.user_attrs.get("gantrack.baseline") for t in study.trials] == [True] + [None] * 3
    base = study.trials[0].value

    best = YAML(typ="safe").load((project / "tuning/best_params.yaml").read_text())
    assert best["trial"] == study.best_trial.number and best["params"] == study.best_params
    assert best["fid_classifier_n200"] == pytest.approx(study.best_value)
    assert best["baseline"] == {"trial": 0, "fid_classifier_n200": pytest.approx(base)}
    assert best["data"] == "digits"
    report = (project / "tuning/report.md").read_text()
    assert "- Objective: fid_classifier_n200 (lower is better)\n- Data: digits\n" in report
    assert "- Trials: 4 complete, 0 pruned, 0 failed\n" in report
    assert (
        f"- Baseline: trial 0 (the params before the search), fid_classifier_n200 = {base:.4g}\n"
        in report
    )
    if study.best_trial.number == 0:
        assert "the baseline itself; no trial beat it" in report
    else:
        lower = (base - study.best_value) / base
        assert f"- Best: trial {study.best_trial.number}, fid_classifier_n200 = " in report
        assert f"{lower:.1%} lower than the baseline's {base:.4g}\n" in report
    # 4 complete trials: no importances, and the report says why.
    assert "None: 4 complete trials; importances need at least 5." in report
    assert not (project / "tuning/param_importances.png").exists()
    csv = (project / "tuning/trials.csv").read_text().splitlines()
    assert len(csv) == 5 and "params_train.lr_g" in csv[0]
    for name in ("optimization_history", "intermediate_values", "parallel_coordinate"):
        assert (project / f"tuning/{name}.png").stat().st_size > 0, name

    client = _mlflow(project)
    (parent,), children = _runs(project, "main")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_fid_classifier_n200"] == pytest.approx(study.best_value)
    assert parent.data.metrics["baseline_fid_classifier_n200"] == pytest.approx(base)
    assert parent.data.tags["optuna.baseline_trial"] == "0"
    assert parent.data.params["tune.epochs"] == "2"
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "trials.csv", "best_params.yaml", "plots"} <= parent_files
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    for trial in study.trials:
        (child,) = [c for c in children if c.data.tags["optuna.trial"] == str(trial.number)]
        assert child.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert child.data.tags["state"] == "complete" and child.info.status == "FINISHED"
        assert child.data.tags["optuna.baseline"] == ("true" if trial.number == 0 else "false")
        assert child.data.params == {k: str(v) for k, v in trial.params.items()}
        assert child.data.metrics["final_fid_classifier_n200"] == pytest.approx(trial.value)
        fids = client.get_metric_history(child.info.run_id, "fid_classifier_n200")
        assert {m.step: m.value for m in fids} == pytest.approx(trial.intermediate_values)
        assert [m.step for m in client.get_metric_history(child.info.run_id, "g_loss")] == [1, 2]
        grids = [a.path for a in client.list_artifacts(child.info.run_id, "samples")]
        assert grids == ["samples/2.png"]


def test_optuna_dashboard_serves_the_study(project, tuned):
    """`optuna-dashboard sqlite:///tuning/optuna.db --artifact-dir tuning/artifacts`, as the docs
    say, lists the study and its trials on 127.0.0.1, names the objective, and serves each
    trial's last sample grid (the one its MLflow run holds), also to a browser."""
    import json
    import urllib.request

    port = free_port()
    server = subprocess.Popen(
        ["optuna-dashboard", "sqlite:///tuning/optuna.db", "--artifact-dir", "tuning/artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--quiet"], cwd=project, env=user_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def get(path: str) -> bytes:
        with urllib.request.urlopen(f"{url}{path}", timeout=30) as response:
            return response.read()

    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                studies = json.loads(get("/api/studies"))["study_summaries"]
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no dashboard"
                time.sleep(0.5)
        (main,) = [s for s in studies if s["study_name"] == "main"]
        detail = json.loads(get(f"/api/studies/{main['study_id']}"))
        grids = {}
        for trial in detail["trials"]:
            (artifact,) = trial["artifacts"]
            assert artifact["filename"] == f"trial{trial['number']}_epoch2.png"
            assert artifact["mimetype"] == "image/png"
            path = f"/artifacts/{main['study_id']}/{trial['trial_id']}/{artifact['artifact_id']}"
            grids[trial["number"]] = get(path)
        page = _dashboard_page(f"{url}/dashboard/studies/{main['study_id']}", trial=1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(detail["trials"]) == len(tuned.trials)
    assert [t["number"] for t in detail["best_trials"]] == [tuned.best_trial.number]
    assert detail["objective_names"] == ["fid_classifier_n200"]  # not "Objective 0"
    client = _mlflow(project)
    for trial in tuned.trials:  # the grid the trial's MLflow run holds, byte for byte
        logged = client.download_artifacts(trial.user_attrs["mlflow_run_id"], "samples/2.png")
        assert grids[trial.number] == Path(logged).read_bytes()
    if page is not None:
        text, image_width = page
        assert "fid_classifier_n200" in text and "Objective 0" not in text
        assert image_width > 0  # the trial's grid, drawn


def _dashboard_page(study_page: str, trial: int) -> tuple[str, int] | None:
    """(the study page's text, the drawn width of trial `trial`'s grid on its trials page) in
    headless Chromium; None without Playwright or a Chromium."""
    browser = next(filter(None, map(shutil.which, CHROMIUMS)), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if browser is None:
        return None

    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page = chrome.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(study_page)
        page.get_by_text("fid_classifier_n200").first.wait_for(timeout=30_000)
        text = page.inner_text("body")
        page.goto(f"{study_page}/trials?numbers={trial}")
        image = page.locator("img[src^='/artifacts/']").first
        image.wait_for(timeout=30_000)
        page.wait_for_function("i => i.complete", arg=image.element_handle(), timeout=30_000)
        width = image.evaluate("i => i.naturalWidth")
        chrome.close()
    return text, width


def test_killed_worker_trial_is_marked_failed_and_the_study_resumes(project):
    tune = {"study_name": "killed", "epochs": 200, "n_trials": 1, "heartbeat_seconds": 1}
    params = _write_params(project / "params_killed.yaml", tune)
    study = tuning.open_study(config.load(params).tune)
    command = ["gantrack", "--params", params.name, "tune"]
    proc = subprocess.Popen(command, cwd=project, env=user_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    # Kill it once its trial is training (an intermediate FID is stored).
    while not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        assert proc.poll() is None, "gantrack tune ended before it could be killed"
        assert time.monotonic() < deadline, "no trial started training in time"
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(4)  # well beyond the grace period (two missed heartbeats), also under load

    study = tuning.tune(_cfg(study_name="killed", epochs=1, n_trials=1, heartbeat_seconds=1))
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    (parent,), children = _runs(project, "killed")  # one run for the study, across workers
    assert parent.info.status == "FINISHED"
    assert [c.data.tags["state"] for c in children] == ["failed", "complete"]
    assert [c.info.status for c in children] == ["FAILED", "FINISHED"]


def test_a_signalled_worker_fails_its_trial_at_once_with_one_line(project):
    """SIGTERM (or any stop) to `gantrack tune`: one line, exit 143, its trial FAIL in the study
    and its run KILLED at once (the trial stayed RUNNING until the heartbeat ran out)."""
    tune = {"study_name": "signalled", "epochs": 200, "n_trials": 1, "heartbeat_seconds": 600}
    params = _write_params(project / "params_signalled.yaml", tune)
    study = tuning.open_study(config.load(params).tune)
    command = ["gantrack", "--params", params.name, "tune"]
    proc = subprocess.Popen(command, cwd=project, env=user_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no trial started training in time"
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "gantrack tune: stopped by SIGTERM", err
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.FAIL]
    _, (child,) = _runs(project, "signalled")
    assert child.info.status == "KILLED" and child.data.tags["state"] == "failed"


def test_a_study_whose_run_was_deleted_in_the_ui_gets_a_new_run_linking_it(project, caplog):
    cfg = _cfg(study_name="deleted-run", epochs=1, n_trials=1, artifact_dir="grids")
    study = tuning.tune(cfg)
    old = study.user_attrs["gantrack.mlflow_run"]
    _mlflow(project).delete_run(old)
    study = tuning.tune(cfg)
    # Resumed: the baseline ran once, first; each trial's grid is in tune.artifact_dir.
    assert [t.user_attrs.get("gantrack.baseline") for t in study.trials] == [True, None]
    assert len(list((project / "grids").iterdir())) == 2
    (parent,), children = _runs(project, "deleted-run")  # the deleted run is not listed
    assert parent.info.run_id == study.user_attrs["gantrack.mlflow_run"] != old
    assert parent.data.tags["gantrack.replaces"] == old and parent.info.status == "FINISHED"
    new = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
    assert len(new) == 1 and "is deleted" in caplog.text


def test_a_shared_storage_cannot_aim_tune_at_runs_not_of_its_study(project, caplog):
    """Another user of the storage names a finished run of the store (a champion's training
    run) as the study's run and as a killed trial's run: it was marked FAILED and took the
    study's metrics and child runs. Now it is left alone and the study starts its own."""
    client = _mlflow(project)
    experiment = client.get_experiment_by_name("gantrack")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("gantrack")
    foreign = client.create_run(experiment_id, run_name="someone's training").info.run_id
    client.set_terminated(foreign, "FINISHED")
    cfg = _cfg(study_name="hostile", epochs=1, n_trials=1, heartbeat_seconds=1)
    study = tuning.open_study(cfg.tune)
    study.set_user_attr(tuning.STUDY_RUN_ATTR, foreign)
    storage = study._storage
    stale = storage.create_new_trial(study._study_id)
    storage.set_trial_user_attr(stale, objective.RUN_ATTR, foreign)
    storage.record_heartbeat(stale)
    time.sleep(3)  # beyond the grace period: the trial is stale
    study = tuning.tune(cfg)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    run = client.get_run(foreign)
    assert run.info.status == "FINISHED" and run.data.tags.get("state") is None
    assert not run.data.metrics and "optuna.best_trial" not in run.data.tags
    (parent,), (child,) = _runs(project, "hostile")
    assert parent.info.run_id == study.user_attrs[tuning.STUDY_RUN_ATTR] != foreign
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert "not a running trial of study 'hostile'; left alone" in caplog.text
    assert "not this study's; starting a new one" in caplog.text


def _good_then_stuck(cfg: config.Config) -> optuna.Study:
    """cfg's study with two trials enqueued, the first learning and the second stuck (rates
    so low it barely moves: a worse FID at every step), run."""
    study = tuning.open_study(cfg.tune)
    good = {"train.lr_g": 2e-3, "train.lr_d": 2e-3}
    stuck = {"train.lr_g": 1e-4, "train.lr_d": 1e-4}
    for lrs in (good, stuck):
        study.enqueue_trial({**lrs, "model.generator.layers": 2, "model.discriminator.layers": 2})
    return tuning.tune(cfg)


def test_pruned_trials_stop_training_early(project):
    cfg = _cfg(study_name="pruned", n_trials=2, epochs=3, pruner="median",
               prune_startup_trials=1)  # fmt: skip
    study = _good_then_stuck(cfg)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    pruned = study.trials[1]
    assert list(pruned.intermediate_values) == [1]
    _, children = _runs(project, "pruned")
    assert children[1].data.tags["state"] == "pruned"
    history = _mlflow(project).get_metric_history(children[1].info.run_id, "g_loss")
    assert [m.step for m in history] == [1]  # training stopped at the pruned epoch


def test_hyperband_prunes_a_trial_worse_than_its_bracket(project):
    # tune.epochs 2, tune.fid_every 1: one bracket (reduction factor 3), its first rung at epoch 1
    cfg = _cfg(study_name="hyperband", n_trials=2, epochs=2, pruner="hyperband")
    assert isinstance(tuning.open_study(cfg.tune).pruner, optuna.pruners.HyperbandPruner)
    study = _good_then_stuck(cfg)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert list(study.trials[0].intermediate_values) == [1, 2]
    assert list(study.trials[1].intermediate_values) == [1]
    _, children = _runs(project, "hyperband")
    assert [c.data.tags["state"] for c in children] == ["complete", "pruned"]


def test_equal_time_trials_train_what_their_speed_fits_and_report_at_budget_seconds(
    project, monkeypatch
):
    monkeypatch.setattr(budget, "ROUNDS", 1)  # what is asserted follows from any timing
    cfg = _cfg(study_name="seconds", n_trials=2, seconds=2, fid_every_seconds=1)
    study = tuning.tune(cfg)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    _, children = _runs(project, "seconds")
    client = _mlflow(project)
    # the study's clock: the reference's step time, from its first timing (trial 0's)
    clock = study.user_attrs[objective.CLOCK_ATTR]
    assert clock == children[0].data.metrics["reference_step_seconds"]
    for trial, child in zip(study.trials, children, strict=True):
        # the steps come from the trial's speed against the reference's, and its run says both
        per_epoch = steps_per_epoch(cfg.train, len(data.load_split(PATHS.train).images))
        metrics = child.data.metrics
        step = clock * metrics["step_seconds"] / metrics["reference_step_seconds"]
        share = budget.plan(2, 1, step, per_epoch)
        epochs = round(share.steps / per_epoch, 2)
        assert int(child.data.params["budget.steps"]) == share.steps
        assert trial.user_attrs["epochs"] == epochs == float(child.data.params["budget.epochs"])
        losses = client.get_metric_history(child.info.run_id, "g_loss")
        assert [m.step for m in losses] == list(range(1, share.epochs + 1))
        # the FIDs at the budget's seconds (inside epochs), logged and reported there: the
        # same steps for every trial; the last is the trial's value
        fids = {m.step: m.value for m in client.get_metric_history(
            child.info.run_id, "fid_classifier_n200_by_second")}  # fmt: skip
        assert fids == pytest.approx(trial.intermediate_values) and list(fids) == [1, 2]
        assert trial.value == pytest.approx(fids[2])
    best = study.best_trial.user_attrs["epochs"]
    assert f"the best trial trained {best} epochs" in (project / "tuning" / "report.md").read_text()
    # a study's pruner counts in one unit: epochs trials do not join a study of seconds
    with pytest.raises(UserError, match="holds trials of budget seconds"):
        tuning.tune(_cfg(study_name="seconds", n_trials=1))


def test_hyperband_counts_budget_seconds_with_tune_seconds(project, monkeypatch):
    monkeypatch.setattr(budget, "ROUNDS", 1)
    # tune.seconds 2, fid_every_seconds 1: one bracket, its first rung after 1 s of the budget
    cfg = _cfg(study_name="hyperband-seconds", n_trials=2, seconds=2, fid_every_seconds=1,
               pruner="hyperband")  # fmt: skip
    study = _good_then_stuck(cfg)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert list(study.trials[1].intermediate_values) == [1]


def test_trials_leave_no_traced_graph_behind(project):
    """Every traced optimizer step registers a tf.custom_gradient holding its graph in
    TensorFlow's global registry; tune drops those after each trial."""
    import gc

    from tensorflow.python.framework import ops
    from tensorflow.python.framework.func_graph import FuncGraph

    def graphs() -> int:
        gc.collect()
        return sum(isinstance(o, FuncGraph) for o in gc.get_objects())

    registry = ops._gradient_registry._registry
    before, graphs_before = set(registry), graphs()
    study = tuning.tune(_cfg(study_name="memory", n_trials=1, epochs=1))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    assert not [name for name in set(registry) - before if name.startswith("CustomGradient-")]
    assert graphs() <= graphs_before


def test_apply_writes_the_best_params_into_params_yaml_naming_data_and_study(project, tuned):
    """--apply on the shipped params.yaml (the digits, study `main`): the searched knobs take the
    best trial's values, each commented with the data, study and trial it was found on (no
    longer "Fashion-MNIST"); explanations and every other line stay as they were."""
    import difflib

    shipped = (ROOT / "params.yaml").read_text()
    before = shipped.replace("  dataset: fashion_mnist    #", "  dataset: digits           #")
    before = before.replace("  study_name: gantrack\n", "  study_name: main\n")
    before = before.replace("g_layers: {low: 2, high: 4}", "g_layers: {low: 1, high: 2}")
    before = before.replace("d_layers: {low: 1, high: 3}", "d_layers: {low: 1, high: 2}")
    target = project / "params_apply.yaml"  # the study's space: its trials lie inside it
    target.write_text(before)
    searched = config.load(target).tune
    proc = _gantrack(project, "--params", "params_apply.yaml", "tune", "--apply")
    assert proc.returncode == 0, proc.stderr
    after = target.read_text()
    applied, best = config.load(target), tuned.best_params
    assert applied.train.lr_g == best["train.lr_g"] and applied.train.lr_d == best["train.lr_d"]
    assert applied.model.generator.layers == best["model.generator.layers"]
    assert applied.model.discriminator.layers == best["model.discriminator.layers"]
    assert applied.tune == searched and searched.study_name == "main"
    number = tuned.best_trial.number
    unbeaten = ", the baseline: no trial beat it" if number == 0 else ""
    note = f"# found by `gantrack tune` on digits (study main, trial {number}{unbeaten})"
    assert "Fashion-MNIST (README" not in after and after.count(note) == 4
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    removed = [line[2:] for line in diff if line.startswith("- ")]
    added = [line[2:] for line in diff if line.startswith("+ ")]
    assert [line.split(":")[0].strip() for line in removed] == ["layers", "layers", "lr_g", "lr_d"]
    keys = [line.split(":")[0].strip() for line in added if note in line]
    assert keys == ["layers", "layers", "lr_g", "lr_d"]
    # The knobs' explanations move below the note, word for word; nothing else changes.
    moved = [line.strip() for line in added if note not in line]
    assert moved == ["# " + line.split("#", 1)[1].strip() for line in removed]
    assert moved[0] == "# transposed convs incl. the output one; >= one per 2x upsampling"
    assert all(line.index("#") >= 28 for line in added)  # params.yaml's comment column


def _hostile_study(path: Path, params: dict, data: str) -> None:
    """A study as another user of a shared storage could leave it: one complete trial with
    params, its data attribute `data`."""
    from optuna.distributions import FloatDistribution, IntDistribution

    study = optuna.create_study(study_name="gantrack", storage=f"sqlite:///{path}")
    study.set_user_attr(report.DATA_ATTR, data)
    kinds = {float: lambda v: FloatDistribution(min(v, 1e-9), max(v, 10.0)),
             int: lambda v: IntDistribution(min(v, 0), max(v, 10))}  # fmt: skip
    distributions = {k: kinds[type(v)](v) for k, v in params.items()}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                              value=1.0))  # fmt: skip


LR = {"train.lr_g": 1e-3, "train.lr_d": 1e-3}
LAYERS = {"model.generator.layers": 3, "model.discriminator.layers": 2}


@pytest.mark.parametrize(
    ("params", "data", "message"),
    [
        ({**LR, **LAYERS}, "digits\ntracking:\n  experiment: taken\n#", None),
        ({**LR, "model.generator.layers": 9, "model.discriminator.layers": 2}, "digits",
         "model.generator.layers 9 lies outside tune.space"),
        ({**LR, **LAYERS, "train.r1_gamma": 1e6}, "digits",
         "train.r1_gamma: not a knob this tune.space searches"),
        (LR, "digits", "does not set model.discriminator.layers, which tune.space searches"),
        ({**LR, "model.generator.layers": 2.5, "model.discriminator.layers": 2}, "digits",
         "model.generator.layers 2.5 lies outside"),
    ],
)  # fmt: skip
def test_apply_trusts_nothing_from_a_shared_study(tmp_path, params, data, message):
    """A study another user wrote: its words reach params.yaml only as one comment line (a
    newline in them once added a tracking section), and a trial setting knobs or values its
    space does not hold is refused whole, one line, params.yaml untouched."""
    params_path = write_params(tmp_path / "params.yaml", {"tune": {"storage": "sqlite:///s.db"}})
    _hostile_study(tmp_path / "s.db", params, data)
    before = params_path.read_text()
    proc = _gantrack(tmp_path, "tune", "--apply")
    if message is None:
        assert proc.returncode == 0, proc.stderr
        applied = config.load(params_path)
        assert applied.tracking == config.Config().tracking and applied.train.lr_g == 1e-3
        (line,) = [line for line in params_path.read_text().splitlines() if "lr_g: 0.001" in line]
        assert "found by `gantrack tune` on digits\\ntracking:\\n  experiment: taken" in line
    else:
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()  # no "old -> new" lines before it
        assert message in line and "not applied" in line
        assert params_path.read_text() == before


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"lr_g": {"low": 1e-3, "high": 1e-4}}, r"tune\.space\.lr_g: low 0\.001 must be < high"),
        ({"g_layers": {"low": 2, "high": 2}}, r"tune\.space\.g_layers: low 2 must be < high 2"),
        ({"lr_d": {"low": 0, "high": 1e-3}}, r"lr_d\.low: 0\.0 is out of range; log scale"),
        ({"lr_g": {"low": -1e-4, "high": 1e-3}}, r"lr_g\.low: -0\.0001 .* log scale needs > 0"),
        ({"lr_gen": {"low": 1e-4, "high": 1e-3}}, r"tune\.space\.lr_gen: unknown key; allowed in "
                                                  r"tune\.space: lr_g, lr_d, g_layers"),
        ({"lr_g": {"low": 1e-4, "mid": 1e-3}}, r"lr_g\.mid: unknown key; allowed in tune"),
        ({"lr_g": {"low": 1e-4}}, r"tune\.space\.lr_g\.high: missing; tune\.space\.lr_g needs"),
        ({"d_layers": {"low": 0, "high": 3}}, r"d_layers\.low: 0 is out of range; must be >= 1"),
        ({"label_smoothing": {"low": 0.0, "high": 1.0}}, r"label_smoothing\.high: 1\.0 is out"),
        ({"r1_gamma": {"low": 0.0, "high": 1.0}}, r"r1_gamma\.low: 0\.0 is out of range; log "),
        ({"batch_size": []}, r"tune\.space\.batch_size: no choices"),
        ({"batch_size": [64, 0]}, r"batch_size\[1\]: 0 is out of range; must be >= 1"),
        ({"d_filters": [32, 0]}, r"d_filters\[1\]: 0 is out of range; must be >= 1"),
        ({"g_layers": {"low": 1.5, "high": 3}}, r"g_layers\.low: must be int, got 1\.5"),
        ({k: None for k in SPACE}, r"tune\.space: nothing to search; give one of: lr_g, "),
    ],
)  # fmt: skip
def test_invalid_search_space_is_one_line_naming_the_key(space, message):
    raw = copy.deepcopy(TUNE_TINY)
    raw["tune"]["space"] = {**SPACE, **space}  # each named parameter replaced, not merged
    with pytest.raises(UserError, match=message) as info:
        config.from_dict(raw)
    assert "\n" not in str(info.value)


def test_generator_layers_searched_must_reach_the_image_size():
    raw = {"tune": {"space": {"g_layers": {"low": 1, "high": 3}}}}  # fashion_mnist: 28x28
    with pytest.raises(UserError, match=r"tune\.space\.g_layers\.low: 1 is too few for 28x28"):
        config.check_search_layers(config.from_dict(raw))
    # The pipeline's stages do not search: 64x64 images with the default space still load.
    big = {"data": {"dataset": "folder", "source_dir": "images", "image_size": 64},
           "model": {"generator": {"layers": 4}}}  # fmt: skip
    assert config.from_dict(big).data.shape == (64, 64, 3)
    with pytest.raises(UserError, match=r"tune\.n_trials: null needs tune\.timeout"):
        config.from_dict({"tune": {"n_trials": None}})
    space = config.from_dict({"tune": {"space": {"batch_size": [64, 128]}}}).tune.space
    assert space.batch_size == (64, 128) and space.beta1_g is None


def test_a_trial_trains_with_the_values_it_drew_for_every_searched_knob():
    space = {"r1_gamma": {"low": 0.01, "high": 1.0}, "batch_size": [64, 128],
             "g_filters": [32, 64], "d_filters": [32, 48]}  # fmt: skip
    cfg = config.from_dict({"train": {"r1_gamma": 0.1}, "tune": {"space": space, "epochs": 3}})
    drawn = {"train.lr_g": 2e-4, "train.lr_d": 3e-4, "model.generator.layers": 3,
             "model.discriminator.layers": 1, "train.r1_gamma": 0.05,
             "train.batch_size": 128, "model.generator.filters": 64,
             "model.discriminator.filters": 48}  # fmt: skip
    trial_cfg = objective.suggest(optuna.trial.FixedTrial(drawn), cfg)  # optuna's test trial
    t, m = trial_cfg.train, trial_cfg.model
    assert (t.lr_g, t.lr_d, t.r1_gamma, t.batch_size, t.epochs) == (2e-4, 3e-4, 0.05, 128, 3)
    assert (m.generator.layers, m.discriminator.layers) == (3, 1)
    assert (m.generator.filters, m.discriminator.filters) == (64, 48)
    params, _ = objective.baseline(cfg)  # the baseline trial: params.yaml's own widths
    assert (params["model.generator.filters"], params["model.discriminator.filters"]) == (32, 32)
    narrow = config.from_dict({"train": {"r1_gamma": 0.1},
                               "tune": {"space": {**space, "d_filters": [48, 64]}}})  # fmt: skip
    why = "model.discriminator.filters 32 lies outside tune.space.d_filters"
    assert objective.baseline(narrow) == (None, why)
    assert trial_cfg.train.label_smoothing == cfg.train.label_smoothing  # not searched


def test_a_shared_studys_words_reach_the_report_and_csv_inert():
    """Attributes another user of the storage wrote: no terminal escape, heading or markup of
    theirs in report.md, no formula in trials.csv."""
    from gantrack.tuning import results

    study = optuna.create_study()
    study.set_user_attr(report.DATA_ATTR, "digits\x1b[2J\n# Injected\n<img src=x onerror=y>")
    lr = optuna.distributions.FloatDistribution(1e-5, 1e-2)
    study.add_trial(optuna.trial.create_trial(
        params={"train.lr_g": 1e-3}, value=1.0, user_attrs={"note": "=HYPERLINK(\"http://x\")"},
        distributions={"train.lr_g": lr}))  # fmt: skip
    text = report.markdown(study, "fid", {"trials_complete": 1, "trials_pruned": 0,
                                          "trials_fail": 0})  # fmt: skip
    (data,) = [line for line in text.splitlines() if line.startswith("- Data:")]
    assert data == r"- Data: digits\\x1b\[2J\\n# Injected\\n&lt;img src=x onerror=y&gt;"
    assert "\x1b" not in text and "\n# Injected" not in text
    cells = study.trials_dataframe().map(results._csv_cell)
    assert cells["user_attrs_note"][0] == '\'=HYPERLINK("http://x")' and cells["value"][0] == 1


@pytest.mark.parametrize(
    "words",
    [
        r"\[phish\](https://evil.example/login) \[x\](javascript:alert(1))",
        "[x](javascript:alert(1)) ![i](http://e/i.png) <a href=x>y</a> &amp;",
        "*bold* _em_ `code` ~~gone~~ | cell | \\` \\\\[x](y)",
        "digits\x1b[2J\n# Injected",
        "a" * 198 + "<b>x</b>",  # cut at 200 characters: inside an entity once escaped
        "train.lr_g __init__ _em_ a_b_c",  # underscores inside words stay as they are
    ],
)  # fmt: skip
def test_a_shared_studys_words_render_as_themselves(words):
    """Rendered as CommonMark with tables and strikethrough (GitHub's, MLflow's viewers), the
    report shows another user's words as plain text: no link, image, markup or cell."""
    from markdown_it import MarkdownIt

    rendered = (
        MarkdownIt("commonmark")
        .enable(["table", "strikethrough"])
        .render(f"- Data: {report.text(words)}\n")
    )
    inner = rendered.removeprefix("<ul>\n<li>Data: ").removesuffix("</li>\n</ul>\n")
    assert "<" not in inner.replace("&lt;", ""), rendered  # no element of theirs
    shown = printable(words)
    assert html.unescape(inner) == (shown if len(shown) <= 200 else shown[:200] + "...")
    assert "train.lr_g" not in words or "train.lr_g" in report.text(words)


def test_a_study_that_searched_a_knob_otherwise_is_one_line(project):
    """Trials of the study drew lr_g without the log scale gantrack searches it on: Optuna
    refuses the draw (a traceback before)."""
    from optuna.distributions import FloatDistribution

    cfg = _cfg(study_name="otherwise", epochs=1, n_trials=1)
    study = tuning.open_study(cfg.tune)
    study.add_trial(optuna.trial.create_trial(params={"train.lr_g": 1e-3}, value=1.0,
        distributions={"train.lr_g": FloatDistribution(1e-5, 3e-3)}))  # fmt: skip
    with pytest.raises(UserError, match=r"study 'otherwise' searched train\.lr_g otherwise"):
        tuning.tune(cfg)


def test_a_database_of_another_program_as_the_storage_is_one_line(tmp_path):
    """tune.storage naming the MLflow store (an easy slip): one line, exit 2."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.search_experiments()  # the store's tables
    finally:
        mlflow.set_tracking_uri(None)
    write_params(tmp_path / "params.yaml", {"tune": {"storage": "sqlite:///mlflow.db"}})
    proc = _gantrack(tmp_path, "tune", "--apply")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "tune.storage: sqlite:///mlflow.db holds another program's tables (" in line
    with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "experiments" in tables and not {"studies", "version_info"} & tables  # untouched


@pytest.mark.parametrize(
    ("tune", "args", "message"),
    [
        ({"space": {"lr_g": {"low": 1, "high": 0.1}}}, [], "tune.space.lr_g: low 1.0 must be <"),
        ({}, [], "data/prepared/train.npz is missing; run `dvc repro reference`"),
        ({"seconds": 0}, [], "tune.seconds: 0 is out of range; must be >= 1"),
        ({"storage": "postgresql+psycopg2://me:secret@127.0.0.1:{port}/db"}, ["--create-only"],
         "tune.storage: cannot open postgresql+psycopg2://me:***@127.0.0.1:"),
        ({"storage": "sqlite:////nonexistent/dir/optuna.db"}, ["--create-only"],
         "tune.storage: sqlite:////nonexistent/dir/optuna.db: no folder /nonexistent/dir"),
    ],
)  # fmt: skip
def test_cli_bad_tune_input_one_line_exit_2_before_any_trial(tmp_path, tune, args, message):
    tune = {k: v.format(port=free_port()) if k == "storage" else v for k, v in tune.items()}
    _write_params(tmp_path / "params.yaml", tune)
    proc = _gantrack(tmp_path, "tune", *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("gantrack tune: error: ") and message in line and "secret" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


@pytest.fixture
def fresh_project(project, tmp_path):
    """The module's project inputs in a new project that has no MLflow store yet."""
    fresh = tmp_path / "fresh"
    for name in ("data", "models", "params.yaml"):
        copy_ = shutil.copytree if (project / name).is_dir() else shutil.copy
        copy_(project / name, fresh / name if name != "params.yaml" else fresh)
    return fresh


def test_four_workers_on_a_fresh_project_share_one_study_and_leak_no_password(
    fresh_project, postgres_url
):
    """Four `gantrack tune` workers started at once on a project without an MLflow store (they
    create and migrate the default sqlite store together) share a PostgreSQL study whose URL,
    password included, comes from the environment; the password appears nowhere."""
    project = fresh_project
    _write_params(project / "params.yaml", {"study_name": "parallel", "n_trials": 1, "epochs": 1})
    env = {**user_env(), "GANTRACK_TUNE_STORAGE": postgres_url}
    created = _gantrack(project, "tune", "--create-only", env=env)
    assert created.returncode == 0, created.stderr
    logs = [project / f"worker{i}.log" for i in range(4)]
    with contextlib.ExitStack() as files:
        workers = [subprocess.Popen(["gantrack", "tune", "--worker", str(i)], cwd=project,
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=files.enter_context(log.open("w")))
                   for i, log in enumerate(logs)]  # fmt: skip
        for worker, log in zip(workers, logs, strict=True):
            assert worker.wait(timeout=600) == 0, log.read_text()

    study = optuna.load_study(study_name="parallel", storage=postgres_url)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state.is_finished() for t in study.trials)
    assert sum(bool(t.user_attrs.get("gantrack.baseline")) for t in study.trials) == 1
    (parent,), children = _runs(project, "parallel")  # made by --create-only, shared
    assert study.user_attrs["gantrack.mlflow_run"] == parent.info.run_id
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == [0, 1, 2, 3]
    assert sorted(c.data.tags["optuna.worker"] for c in children) == ["0", "1", "2", "3"]
    run_ids = {t.user_attrs["mlflow_run_id"] for t in study.trials}
    assert run_ids == {c.info.run_id for c in children}
    # The password: not in any file of the project (the MLflow store, its artifacts, tuning/
    # reports, worker logs), nor in what the CLI printed.
    assert PG_PASSWORD not in created.stdout + created.stderr
    for path in project.rglob("*"):
        if path.is_file():
            assert PG_PASSWORD.encode() not in path.read_bytes(), path
    assert "postgres:***@127.0.0.1" in created.stderr  # the log names the study's storage


@pytest.mark.slow
def test_two_workers_log_into_a_real_mlflow_server(fresh_project, postgres_url, tmp_path):
    """The README's scale-out recipe: the study in PostgreSQL, MLflow on an `mlflow server`
    with a database backend. Both workers' trials land on the server under the study's one
    parent run; the project gets no MLflow store of its own."""
    project = fresh_project
    _write_params(project / "params.yaml", {"study_name": "served", "n_trials": 1, "epochs": 1})
    (tmp_path / "server").mkdir()
    with mlflow_server(tmp_path / "server", free_port()) as uri:
        env = {**user_env(), "GANTRACK_TUNE_STORAGE": postgres_url, "MLFLOW_TRACKING_URI": uri}
        created = _gantrack(project, "tune", "--create-only", env=env)
        assert created.returncode == 0, created.stderr
        workers = [subprocess.Popen(["gantrack", "tune", "--worker", str(i)], cwd=project,
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
                   for i in range(2)]  # fmt: skip
        for worker in workers:
            _, err = worker.communicate(timeout=600)
            assert worker.returncode == 0, err
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        (parent,), children = _runs(project, "served", client)
        assert parent.info.status == "FINISHED"
        assert {"trials.csv", "best_params.yaml"} <= {
            a.path for a in client.list_artifacts(parent.info.run_id)
        }
        assert sorted(c.data.tags["optuna.worker"] for c in children) == ["0", "1"]
        for child in children:
            assert child.info.status == "FINISHED" and child.data.tags["state"] == "complete"
            assert [m.step for m in client.get_metric_history(child.info.run_id, "g_loss")] == [1]
    study = optuna.load_study(study_name="served", storage=postgres_url)
    assert {t.user_attrs["mlflow_run_id"] for t in study.trials} == {
        c.info.run_id for c in children
    }
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()


def test_storage_errors_mask_the_password_also_when_the_url_does_not_parse(tmp_path, postgres_url):
    _write_params(tmp_path / "params.yaml", {})
    wrong = postgres_url.replace(PG_PASSWORD, PG_PASSWORD + "-wrong")
    for url in (wrong, f"postgresql+psycopg2://postgres:{PG_PASSWORD}@127.0.0.1:notaport/x"):
        env = {**user_env(), "GANTRACK_TUNE_STORAGE": url}
        proc = _gantrack(tmp_path, "tune", "--create-only", env=env, timeout=120)
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        scheme = url.split("://")[0]  # both drivers: psycopg (postgresql://) and psycopg2
        assert f"tune.storage: cannot open {scheme}://postgres:***@" in line
        assert PG_PASSWORD not in line


def test_a_sql_ascii_database_holds_the_study_and_the_mlflow_store(fresh_project, postgres_url):
    """Clusters made without a locale are SQL_ASCII; psycopg 3 (`postgresql://`) reads their text
    as bytes, which SQLAlchemy cannot parse, unless the client asks for UTF8 (gantrack does)."""
    from mlflow import MlflowClient
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for name in ("ascii_optuna", "ascii_mlflow"):
            connection.execute(text(f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' "
                                    "TEMPLATE template0"))  # fmt: skip
    base = postgres_url.rsplit("/", 1)[0]
    _write_params(fresh_project / "params.yaml", {"study_name": "ascii"})
    env = {**user_env(), "GANTRACK_TUNE_STORAGE": f"{base}/ascii_optuna",
           "MLFLOW_TRACKING_URI": f"{base}/ascii_mlflow"}  # fmt: skip
    created = _gantrack(fresh_project, "tune", "--create-only", env=env, timeout=300)
    assert created.returncode == 0, created.stderr
    # Read back through psycopg2, which decodes SQL_ASCII text itself.
    old_driver = base.replace("postgresql://", "postgresql+psycopg2://")
    study = optuna.load_study(study_name="ascii", storage=f"{old_driver}/ascii_optuna")
    client = MlflowClient(f"{old_driver}/ascii_mlflow")
    assert client.get_run(study.user_attrs["gantrack.mlflow_run"]).data.tags["mlflow.runName"]


GAN_PASSWORD = "Pg pa ss#w@rd/%5q"  # breaks URL parsing unencoded: a space, '#', '@', '/', '%'


@pytest.fixture(scope="module")
def gan_role(postgres_url):
    """A second role whose password breaks URL parsing, owner of database gan_optuna; its URL
    without the password."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    connection = psycopg2.connect(host=url.host, port=url.port, user=url.username,
                                  password=url.password, dbname=url.database)  # fmt: skip
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE gan LOGIN PASSWORD %s", (GAN_PASSWORD,))
        cursor.execute("CREATE DATABASE gan_optuna OWNER gan")
    connection.close()
    return f"postgresql+psycopg2://gan@{url.host}:{url.port}/gan_optuna"


def test_a_password_from_the_environment_and_in_error_lines_appears_nowhere(tmp_path, gan_role):
    """PGPASSWORD opens the study, with --verbose (SQLAlchemy's statements, alembic's and
    Optuna's debug lines); a wrong database in a URL holding the password, percent-encoded or
    as ?password=, ends in one masked line. The password shows in no output and no file."""
    _write_params(tmp_path / "params.yaml", {"study_name": "env"})
    env = {**user_env(), "PGPASSWORD": GAN_PASSWORD, "GANTRACK_TUNE_STORAGE": gan_role}
    opened = _gantrack(tmp_path, "--verbose", "tune", "--create-only", env=env, timeout=180)
    assert opened.returncode == 0, opened.stderr
    assert "gan_optuna" in opened.stderr  # the log names the storage
    outputs = [opened.stdout, opened.stderr]
    wrong = gan_role.replace("/gan_optuna", "/nodb")
    encoded = quote(GAN_PASSWORD, safe="")
    for url in (wrong.replace("gan@", f"gan:{encoded}@"), f"{wrong}?password={encoded}"):
        env = {**user_env(), "PGPASSWORD": GAN_PASSWORD, "GANTRACK_TUNE_STORAGE": url}
        proc = _gantrack(tmp_path, "tune", "--create-only", env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert 'database "nodb" does not exist' in line and "***" in line, line
        outputs += [proc.stdout, proc.stderr]
    assert_nowhere(GAN_PASSWORD, *outputs)
    assert_no_file_holds(GAN_PASSWORD, tmp_path)


def test_batches_larger_than_the_training_split_are_refused_before_any_trial(project):
    space = {**SPACE, "batch_size": [64, 4096]}
    with pytest.raises(UserError, match=r"tune.space.batch_size: 4096 \* train.n_critic = 4096"):
        tuning.tune(_cfg(study_name="big-batches", space=space))
    storage = project / "tuning/optuna.db"  # made by whichever study of the module ran first
    if storage.exists():
        with pytest.raises(KeyError):  # refused before the study was even created
            optuna.load_study(study_name="big-batches", storage=f"sqlite:///{storage}")


def test_a_study_is_not_reused_with_another_objective(project, tuned):
    """The `main` study holds FIDs on 200 samples: trials on 100 would not be comparable."""
    trials = len(tuned.trials)
    with pytest.raises(UserError, match="holds trials of objective fid_classifier_n200, this"):
        tuning.tune(_cfg(study_name="main", fid_samples=100))
    study = optuna.load_study(study_name="main", storage=f"sqlite:///{project}/tuning/optuna.db")
    assert len(study.trials) == trials
    assert study.user_attrs["gantrack.dataset"] == tuned.user_attrs["gantrack.dataset"]


def test_workers_opening_a_new_study_at_once_enqueue_one_baseline_and_a_resumed_one_none(
    postgres_url,
):
    """Four workers opening a new PostgreSQL study at the same moment (four threads, each with
    its own connections): the one whose create wins enqueues the current params, the others
    find the study; opening it again later (a resumed study) enqueues nothing."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    cfg = _cfg(study_name="race", storage=postgres_url)
    tuning.open_study(_cfg(study_name="race-schema", storage=postgres_url).tune)  # tables exist
    barrier = threading.Barrier(4)

    def open_study(_):
        barrier.wait(timeout=60)
        return tuning.open_study(cfg.tune, baseline=objective.baseline(cfg)).study_name

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_study, range(4))) == ["race"] * 4
    tuning.open_study(cfg.tune, baseline=objective.baseline(cfg))  # resumed
    study = optuna.load_study(study_name="race", storage=postgres_url)
    (waiting,) = study.trials
    assert waiting.state == TrialState.WAITING and waiting.user_attrs == {"gantrack.baseline": True}
    assert waiting.system_attrs["fixed_params"] == {
        "train.lr_g": cfg.train.lr_g, "train.lr_d": cfg.train.lr_d, "model.generator.layers": 2,
        "model.discriminator.layers": 2,
    }  # fmt: skip
    assert study.metric_names == ["fid_classifier_n200"]


def _add_trials(study: optuna.Study, values: list[float], baseline: bool = True) -> None:
    """Complete trials with these values (the first one the baseline, if `baseline`), no
    training: lr_g decides the value, the other params are noise."""
    distributions = {
        "train.lr_g": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True),
        "train.lr_d": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True),
        "model.generator.layers": optuna.distributions.IntDistribution(1, 2),
    }
    for i, value in enumerate(values):
        params = {"train.lr_g": 1e-4 * (1 + value / 10), "train.lr_d": 1e-4 * (1 + i % 3),
                  "model.generator.layers": 1 + i % 2}  # fmt: skip
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, value=value,
            user_attrs={"gantrack.baseline": True} if baseline and i == 0 else {},
        ))  # fmt: skip


def test_report_ranks_importances_from_five_complete_trials_against_the_baseline(project, tmp_path):
    """From 5 complete trials on, the report ranks the params (fANOVA) and says from how many
    trials; the best is compared with the baseline. Trials carry their values (no training)."""
    import mlflow

    from gantrack import tracking
    from gantrack.tuning import results

    study = tuning.open_study(_cfg(study_name="report").tune)
    _add_trials(study, [200.0, 180.0, 260.0, 150.0, 240.0, 220.0])
    tracking.configure("gantrack")
    with mlflow.start_run():
        results.write_outputs(study, "fid_classifier_n200", tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert (
        "- Baseline: trial 0 (the params before the search), fid_classifier_n200 = 200\n" in report
    )
    assert (
        "- Best: trial 3, fid_classifier_n200 = 150, 25.0% lower than the baseline's 200\n"
        in report
    )
    assert "fANOVA on 6 complete trials:" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and "param" not in line]
    ranked = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert ranked[0] == "train.lr_g" and sorted(ranked) == sorted(study.best_params)
    assert (tmp_path / "param_importances.png").stat().st_size > 0


def test_current_params_outside_the_space_run_no_baseline_and_the_report_says_why(tmp_path):
    cfg = _cfg(study_name="no-baseline", space={**SPACE, "batch_size": [128, 256]},
               storage=f"sqlite:///{tmp_path}/optuna.db")  # fmt: skip
    study = tuning.open_study(cfg.tune, baseline=objective.baseline(cfg))
    assert study.trials == []  # train.batch_size 64 is no choice of the space
    _add_trials(study, [210.0], baseline=False)
    counts = {"trials_complete": 1, "trials_pruned": 0, "trials_fail": 0}
    text = report.markdown(study, "fid_classifier_n200", counts)
    assert "- Baseline: none (train.batch_size 64 lies outside tune.space.batch_size)\n" in text
    assert "None: 1 complete trial; importances need at least 5." in text


def test_artifact_dir_must_be_a_folder():
    for value, message in (("s3://bucket/grids", "tune.artifact_dir: 's3://bucket/grids' is a URL"),
                           ("", "tune.artifact_dir: must not be empty")):  # fmt: skip
        with pytest.raises(UserError, match=message):
            _cfg(artifact_dir=value)
    assert _cfg(artifact_dir="/mnt/shared/grids").tune.artifact_dir == "/mnt/shared/grids"


def test_apply_refuses_a_read_only_params_file(tmp_path):
    params = write_params(tmp_path / "params.yaml",
                          {"tune": {"storage": f"sqlite:///{tmp_path / 's.db'}"}})  # fmt: skip
    params.chmod(0o444)
    before = params.read_text()
    _hostile_study(tmp_path / "s.db", {**LR, **LAYERS}, "digits")
    proc = _gantrack(tmp_path, "tune", "--apply")
    one_line_error(proc, "tune", "params.yaml is read-only; make it writable to apply")
    assert params.read_text() == before and stat.S_IMODE(params.stat().st_mode) == 0o444


def test_apply_writes_through_a_linked_params_file(tmp_path):
    """params.yaml a symbolic link (to a shared config): its target takes the values, the
    link stays (it was replaced by a copy)."""
    (tmp_path / "shared").mkdir()
    target = write_params(tmp_path / "shared" / "params.yaml",
                          {"tune": {"storage": f"sqlite:///{tmp_path / 's.db'}"}})  # fmt: skip
    (tmp_path / "params.yaml").symlink_to(target)
    _hostile_study(tmp_path / "s.db", {**LR, **LAYERS}, "digits")
    proc = _gantrack(tmp_path, "tune", "--apply")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "params.yaml").is_symlink()
    assert config.load(target).model.generator.layers == 3
