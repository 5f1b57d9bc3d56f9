"""The README's pictures, from a project where `dvc repro` has run (the default params):

    python scripts/docs_images.py [--project .] [--out docs] [--trials 4] [--no-tune]
                                  [--class-name NAME]

docs/samples.png, progress.gif and curves.png are the pipeline's own plots; a small study
(`gantrack tune`, tune.epochs 2) gives optuna_history.png and optuna_fid_per_epoch.png. A headless
Chromium (Playwright) photographs the MLflow UI of a real `mlflow server` on the project's store:
the run's charts (mlflow_ui.png), the registered model's versions with the `champion` alias
(mlflow_registry.png), the run's logged models (the best epochs' generators beside the chosen
one) charted by losses and FID (mlflow_models.png); skipped with a message without Chromium or
Playwright (`pip install '.[docs]'`; `apt-get install chromium-headless-shell` or `playwright
install chromium`). served.png: one request to a real `gantrack serve` of the champion (8
PNGs of one class: --class-name, else its first) drawn below the request, which is printed with
the answer, trimmed, for the docs to quote.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from ruamel.yaml import YAML

from gantrack.io import images

PIPELINE = {"plots/generated.png": "samples.png", "plots/progress.gif": "progress.gif",
            "plots/losses.png": "curves.png"}  # fmt: skip
STUDY = {"tuning/optimization_history.png": "optuna_history.png",
         "tuning/intermediate_values.png": "optuna_fid_per_epoch.png"}  # fmt: skip
# MLflow 3 opens in its GenAI view; this query parameter selects the Model training view.
MODEL_TRAINING = "workflowType=machine_learning"
CHROMIUMS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
UI_SHOTS = ("mlflow_ui.png", "mlflow_registry.png", "mlflow_models.png")
ALIAS = "champion"
CHARTED = "loss|fid"  # the logged models' charts shown: the losses and the FID (a regex)
SERVED = {"n": 8, "seed": 7, "format": "png"}  # the request served.png shows
CELL = 112  # pixels per served image in served.png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--trials", type=int, default=4, help="trials of the small study")
    parser.add_argument("--no-tune", action="store_true", help="no study pictures")
    parser.add_argument("--class-name", default="", help="the class served.png asks for")
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
    with mlflow_server(project) as url:
        store = Store(url, run_id, registered_model(project))
        if browser is None:
            print(f"docs_images: no Playwright or no Chromium; {', '.join(UI_SHOTS)} not made",
                  file=sys.stderr)  # fmt: skip
        else:
            photograph_ui(browser, store, out)
    if store.champion is None:
        print(f"docs_images: no {ALIAS} in the registry (tracking.registered_model); "
              "mlflow_registry.png, mlflow_models.png and served.png not made",
              file=sys.stderr)  # fmt: skip
    else:
        serve_request(project, store, args.class_name, out / "served.png")
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


class Store:
    """What the pictures show, read from the project's store through url: the run, its
    experiment and logged models; the version of model holding the alias (None without one),
    its description and the classes its generator serves."""

    def __init__(self, url: str, run_id: str, model: str | None):
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(url)
        self.url, self.run_id, self.model = url, run_id, model
        self.experiment = client.get_run(run_id).info.experiment_id
        found = client.search_logged_models([self.experiment], f"source_run_id = '{run_id}'")
        self.logged = {m.name: sorted(x.key for x in m.metrics or ()) for m in found}
        self.champion, self.classes = None, []
        if model is None:
            return
        with contextlib.suppress(MlflowException):  # no alias: nothing registered
            self.champion = client.get_model_version_by_alias(model, ALIAS)
        if self.champion is not None:
            mlflow.set_tracking_uri(url)
            uri = f"models:/{model}/{self.champion.version}"
            self.classes = mlflow.models.get_model_info(uri).metadata.get("class_names") or []


def registered_model(project: Path) -> str | None:
    """params.yaml's tracking.registered_model (gantrack-generator unless set; null: none)."""
    params = YAML(typ="safe").load((project / "params.yaml").read_text()) or {}
    return (params.get("tracking") or {}).get("registered_model", "gantrack-generator")


def photograph_ui(browser: str, store: Store, out: Path) -> None:
    """The run's charts; with a champion, the registered model's page and the experiment's
    logged models in charts."""
    url, experiment = store.url, store.experiment
    page = f"{url}/#/experiments/{experiment}/runs/{store.run_id}/model-metrics?{MODEL_TRAINING}"
    screenshot(browser, page, out / "mlflow_ui.png", show_charts)
    if store.champion is None:
        return
    wide = {"width": 1400, "height": 720}
    page = f"{url}/#/models/{store.model}?{MODEL_TRAINING}"
    screenshot(browser, page, out / "mlflow_registry.png", show_versions(store.champion), wide)
    page = f"{url}/#/experiments/{experiment}/models?{MODEL_TRAINING}&viewMode=CHART"
    from playwright.sync_api import TimeoutError as NotShown

    try:  # the chart view draws lazily: on a long run's page a chart may stay unrendered
        screenshot(browser, page, out / "mlflow_models.png", show_models(store.logged), wide)
    except NotShown as exc:
        print(f"docs_images: mlflow_models.png not made ({str(exc).splitlines()[-1].strip()})",
              file=sys.stderr)  # fmt: skip


@contextlib.contextmanager
def server(args: list[str], cwd: Path, env: dict, ready: str, seconds: float):
    """A server process (in a process group of its own) that is up once the URL `ready`
    answers; the group is stopped after. Its output is shown only if it does not start."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + seconds
            while not answers(ready):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{' '.join(args[:3])} did not start:\n"
                                       f"{log.read()[-2000:]}")  # fmt: skip
                time.sleep(0.5)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(project: Path):
    """`mlflow server` over the project's store on a free port of 127.0.0.1; yields its URL."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    args = ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{project / 'mlflow.db'}"]  # fmt: skip
    with server(args, project, env, f"http://127.0.0.1:{port}/health", 60):
        yield f"http://127.0.0.1:{port}"


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


def screenshot(browser: str, url: str, path: Path, show, viewport=None) -> None:
    """A page of the MLflow UI (url in the `Model training` view, the assistant panel closed)
    once show(page) has seen it draw what the picture is for; prints the path and what it saw."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page = chrome.new_page(viewport=viewport or {"width": 1400, "height": 1250})
        page.add_init_script(
            "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
            "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
        )
        page.goto(url)
        seen = show(page)
        page.screenshot(path=str(path))
        chrome.close()
    print(path if not seen else f"{path}: shows {', '.join(map(repr, seen))}")


def show_charts(page) -> list[str]:
    page.get_by_text("Step", exact=True).first.wait_for(timeout=120_000)  # a chart's axis
    page.wait_for_timeout(5000)  # the other charts and images fetch their data
    return []


def show_versions(champion):
    """The registered model's versions: the champion's row with its alias and description."""

    def show(page) -> list[str]:
        name = f"Version {champion.version}"
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
        seen = [name, f"@ {ALIAS}", (champion.description or "")[:20]]  # its start
        for text in seen:
            row.get_by_text(text).first.wait_for(timeout=60_000)
        return seen

    return show


def show_models(logged: dict[str, list[str]]):
    """The experiment's logged models as charts of their losses and FID, the run's all named."""

    def show(page) -> list[str]:
        page.get_by_placeholder("Search metric charts").fill(CHARTED)
        charts = sorted({m for ms in logged.values() for m in ms if re.search(CHARTED, m)})
        for name in [*logged, *charts]:
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)  # the bars settle
        return [*logged, *charts]

    return show


def serve_request(project: Path, store: Store, class_name: str, path: Path) -> None:
    """One request to `gantrack serve` of the champion, drawn below it into path; the
    request and the answer, trimmed, on stdout."""
    params = {"n": SERVED["n"]}
    if store.classes:
        params["class_name"] = class_name or store.classes[0]
    params.update(SERVED)
    body = {"inputs": [], "params": params}
    uri = f"models:/{store.model}@{ALIAS}"
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    args = [sys.executable, "-m", "gantrack", "serve", "--model", uri, "--port", str(port)]
    with server(args, project, env, f"http://127.0.0.1:{port}/ping", 180):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())["predictions"]
    pictures = [np.asarray(Image.open(io.BytesIO(base64.b64decode(a)))) for a in answer]
    served = f"{uri} (version {store.champion.version})"
    request = f"POST /invocations {json.dumps(body)}"
    what = f"{len(answer)} PNGs of {pictures[0].shape[1]}x{pictures[0].shape[0]}"
    trimmed = ", ".join(json.dumps(a[:16] + "...") for a in answer[:2])
    print(f"served: {served}\nrequest: {request}")
    print(f'answer: {{"predictions": [{trimmed}, ...]}} ({what}, base64)')
    draw_served(pictures, [request, f"-> {what} from {served}"], path)


def draw_served(pictures: list[np.ndarray], lines: list[str], path: Path) -> None:
    """The pictures in one row, scaled to about CELL pixels each, below the lines of text."""
    stack = np.stack([p[..., None] if p.ndim == 2 else p for p in pictures])
    row = images.grid(stack, rows=1)  # scaled up to images.MIN_GRID_WIDTH already
    scale = max(1, round(len(pictures) * CELL / row.shape[1]))
    row = Image.fromarray(row.squeeze(-1) if row.shape[-1] == 1 else row).convert("RGB")
    row = row.resize((row.width * scale, row.height * scale), Image.Resampling.NEAREST)
    try:
        font = ImageFont.truetype("DejaVuSansMono.ttf", 18)
    except OSError:
        font = ImageFont.load_default(size=18)
    margin, line = 16, 26
    width = max(row.width, *(int(font.getlength(t)) for t in lines)) + 2 * margin
    canvas = Image.new("RGB", (width, row.height + len(lines) * line + 3 * margin), "white")
    text = ImageDraw.Draw(canvas)
    for i, t in enumerate(lines):
        text.text((margin, margin + i * line), t, fill="black", font=font)
    canvas.paste(row, (margin, 2 * margin + len(lines) * line))
    canvas.save(path)
    print(path)


if __name__ == "__main__":
    sys.exit(main())
