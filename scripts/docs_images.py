"""The README's pictures, from a project where `dvc repro` has run (the default params):

    python scripts/docs_images.py [--project .] [--out docs] [--trials 4] [--no-tune]

docs/samples.png, progress.gif and curves.png are the pipeline's own plots; a small study
(`gantrack tune`, tune.epochs 2) gives optuna_history.png and optuna_fid_per_epoch.png; a
headless Chromium (driven by Playwright) photographs the run's charts in the MLflow UI
(mlflow_ui.png), skipped with a message when Chromium or Playwright is missing
(`pip install '.[docs]'`; `apt-get install chromium-headless-shell` or
`playwright install chromium`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ruamel.yaml import YAML

PIPELINE = {"plots/generated.png": "samples.png", "plots/progress.gif": "progress.gif",
            "plots/losses.png": "curves.png"}  # fmt: skip
STUDY = {"tuning/optimization_history.png": "optuna_history.png",
         "tuning/intermediate_values.png": "optuna_fid_per_epoch.png"}  # fmt: skip
# MLflow 3 opens in its GenAI view; this query parameter selects the Model training view.
MODEL_TRAINING = "workflowType=machine_learning"
CHROMIUMS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--trials", type=int, default=4, help="trials of the small study")
    parser.add_argument("--no-tune", action="store_true", help="no study pictures")
    args = parser.parse_args(argv)
    project, out = args.project.resolve(), args.out.resolve()
    missing = [name for name in (*PIPELINE, "models/run.json") if not (project / name).is_file()]
    if missing:
        print(
            f"docs_images: {project / missing[0]} missing; run `dvc repro` first", file=sys.stderr
        )
        return 2
    out.mkdir(parents=True, exist_ok=True)
    copy(project, PIPELINE, out)
    if not args.no_tune:
        tune(project, args.trials)
        copy(project, STUDY, out)
    run_id = json.loads((project / "models/run.json").read_text())["run_id"]
    browser = chromium()
    if browser is None:
        print("docs_images: no Playwright or no Chromium; mlflow_ui.png not made", file=sys.stderr)
        return 0
    with mlflow_server(project) as url:
        experiment = experiment_of(url, run_id)
        page = f"{url}/#/experiments/{experiment}/runs/{run_id}/model-metrics?{MODEL_TRAINING}"
        screenshot(browser, page, out / "mlflow_ui.png")
    return 0


def copy(project: Path, names: dict[str, str], out: Path) -> None:
    for source, target in names.items():
        shutil.copyfile(project / source, out / target)
        print(out / target)


def tune(project: Path, trials: int) -> None:
    """A small study on the project's prepared data, with its own params file."""
    yaml = YAML()
    params = yaml.load((project / "params.yaml").read_text())
    params["tune"].update({"study_name": "docs", "epochs": 2, "n_trials": trials})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=project, delete=False) as f:
        yaml.dump(params, f)
    try:
        subprocess.run(["gantrack", "--params", f.name, "tune"], cwd=project, check=True)
    finally:
        os.unlink(f.name)


class mlflow_server:
    """`mlflow server` over the project's store on a free port of 127.0.0.1."""

    def __init__(self, project: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.project = project

    def __enter__(self) -> str:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(
            ["mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers",
             "1", "--backend-store-uri", f"sqlite:///{self.project / 'mlflow.db'}"],
            cwd=self.project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    return url
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


def experiment_of(url: str, run_id: str) -> str:
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}") as response:
        return json.loads(response.read())["run"]["info"]["experiment_id"]


def chromium() -> str | None:
    """The Chromium to drive: an installed one, else Playwright's own; None without either."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    found = next(filter(None, map(shutil.which, CHROMIUMS)), None)
    if found:
        return found
    with sync_playwright() as p:
        bundled = p.chromium.executable_path
    return bundled if Path(bundled).is_file() else None


def screenshot(browser: str, url: str, path: Path) -> None:
    """A page of the MLflow UI once its charts have drawn (url in the `Model training` view),
    with the assistant panel closed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page = chrome.new_page(viewport={"width": 1400, "height": 1250})
        page.add_init_script(
            "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
            "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
        )
        page.goto(url)
        page.get_by_text("Step", exact=True).first.wait_for(timeout=120_000)  # a chart's axis
        page.wait_for_timeout(5000)  # the other charts and images fetch their data
        page.screenshot(path=str(path))
        chrome.close()
    print(path)


if __name__ == "__main__":
    sys.exit(main())
