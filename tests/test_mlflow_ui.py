"""What a user sees first in the MLflow UI, in a real headless Chromium against a real
`mlflow server`: the README's address lands in the Model training view on the `gantrack`
experiment's runs, and a run opens with its newest sample grid above the params."""

import re
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from gantrack import tracking
from gantrack.io import images
from gantrack.tracking import overview

pytestmark = pytest.mark.slow  # a server and a browser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import docs_images  # noqa: E402

README_ADDRESS = re.compile(r"http://127\.0\.0\.1:5000(/\S*)?")
GRID_ROWS, EPOCHS = 8, 3


def readme_address() -> str:
    """The one address the README gives for the MLflow UI, without host and port."""
    found = {m.group(1) or "" for m in README_ADDRESS.finditer((ROOT / "README.md").read_text())}
    assert len(found) == 1, found
    return found.pop()


def _grid(epoch: int) -> np.ndarray:
    """A grid as training draws it (images.grid of grid_rows x grid_rows samples); each
    epoch's brighter than the last."""
    samples = np.random.default_rng(epoch).integers(0, 60, (GRID_ROWS**2, 28, 28, 1), np.uint8)
    return images.grid(samples + np.uint8(60 * epoch), GRID_ROWS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project whose store holds a run as `gantrack train` leaves it: the default store
    made by tracking.configure, a block of params, and three checkpointed epochs logged by
    CheckpointSync."""
    project = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracking.configure("gantrack")
        sync = tracking.CheckpointSync()
        with mlflow.start_run(run_name="fashion_mnist-0a1b2c") as run:
            params = {f"model.generator.knob_{i}": i for i in range(52)}
            mlflow.log_params({**params, "train.grid_rows": GRID_ROWS})
            grids = {}
            for epoch in range(1, EPOCHS + 1):
                grids[epoch] = project / f"{epoch}.png"
                images.save_png(grids[epoch], _grid(epoch))
                history = pd.DataFrame({"epoch": range(1, epoch + 1), "g_loss": 1.0})
                sync(epoch, history, {epoch: grids[epoch]})
        mlflow.set_tracking_uri(None)
    return project, run.info


def test_the_run_holds_the_newest_grid_and_its_preview(trained):
    project, info = trained
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    note = client.get_run(info.run_id).data.tags[overview.NOTE_TAG]
    assert note == overview.note(info.experiment_id, info.run_id, EPOCHS)
    latest = Path(client.download_artifacts(info.run_id, overview.LATEST, str(project / "dl")))
    assert np.array_equal(images.load_png(latest), _grid(EPOCHS))  # the final grid, unchanged
    preview = Image.open(client.download_artifacts(info.run_id, overview.PREVIEW))
    height, width = overview.PREVIEW_BOX
    assert preview.height <= height and preview.width <= width
    assert preview.height >= 0.8 * height or preview.width >= 0.8 * width  # fills its box


@pytest.mark.parametrize("bands_of", [1, 3, 8])
def test_a_preview_cuts_the_grid_between_rows(bands_of):
    """Bands hold whole rows of samples: every sample of the grid, at the grid's own size
    when it fits."""
    rows = 8
    samples = np.arange(rows * rows, dtype=np.uint8)[:, None, None, None] + 100
    samples = np.broadcast_to(samples, (rows * rows, 4 * bands_of, 4 * bands_of, 1))
    picture = overview.preview(images.grid(np.ascontiguousarray(samples), rows), rows)
    assert set(np.unique(picture)) >= set(range(100, 100 + rows * rows))
    height, width = overview.PREVIEW_BOX
    assert picture.shape[0] <= height and picture.shape[1] <= width


def _browser(playwright, viewport, assistant_closed):
    chrome = playwright.chromium.launch(executable_path=docs_images.chromium(),
                                        args=["--no-sandbox"])  # fmt: skip
    page = chrome.new_page(viewport=viewport)
    if assistant_closed:  # as after a user closed the MLflow Assistant once
        page.add_init_script("localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
                             "localStorage.setItem('mlflow.assistant.fab."
                             "autoOpenedOnFirstLoad_v1', 'true');")  # fmt: skip
    return chrome, page


@pytest.mark.parametrize(
    "viewport, assistant_closed",
    [({"width": 1280, "height": 720}, True), ({"width": 1920, "height": 1080}, False)],
    ids=["laptop-1280x720", "first-visit-1920x1080"],
)
def test_from_the_readmes_address_a_run_opens_on_its_grid(trained, viewport, assistant_closed):
    """From the README's address: the Model training view on the experiment's runs; a click
    on the run opens its page with the newest grid loaded and inside the first screen, above
    the params, linked to the full grid in the run's Artifacts."""
    if docs_images.chromium() is None:
        pytest.skip("no Chromium or no Playwright (scripts/setup.sh --test installs both)")
    from playwright.sync_api import sync_playwright

    project, info = trained
    assert info.experiment_id == "1"  # the README's address names it: the first a store makes
    with docs_images.mlflow_server(project) as url, sync_playwright() as p:
        chrome, page = _browser(p, viewport, assistant_closed)
        try:
            page.goto(url + readme_address())
            run_link = page.get_by_role("link", name="fashion_mnist-0a1b2c").first
            run_link.wait_for(timeout=60_000)
            # The Model training view: its sidebar lists Runs and Models, not GenAI's pages.
            assert page.get_by_role("link", name="Runs", exact=True).is_visible()
            assert page.get_by_role("link", name="Evaluation runs").count() == 0
            run_link.click()
            preview = page.locator(f"img[src*='{overview.PREVIEW}']")
            preview.wait_for(timeout=60_000)
            page.wait_for_function("i => i.complete && i.naturalWidth > 0",
                                   arg=preview.element_handle(), timeout=30_000)  # fmt: skip
            box, src = preview.bounding_box(), preview.get_attribute("src")
            params = page.get_by_text("Parameters (53)").bounding_box()
            link = preview.locator("xpath=..").get_attribute("href")
            page.goto(f"{url}/{link}")  # where a click on the preview leads: the full grid
            width = _grid(EPOCHS).shape[1]
            page.wait_for_function(f"[...document.images].some(i => i.naturalWidth == {width})",
                                   timeout=60_000)  # fmt: skip
        finally:
            chrome.close()
    assert f"epoch={EPOCHS}" in src  # the newest grid's
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]
    assert box["height"] >= 60 and box["y"] + box["height"] <= params["y"]
    assert link == f"#/experiments/1/runs/{info.run_id}/artifacts/{overview.LATEST}"
