"""`dvc plots show` offline: the project's HTML template (docs/dvc-plots-template.html, named
by .dvc/config) carries Vega, Vega-Lite and vega-embed, so the page draws its charts in a real
headless Chromium whose every network request is refused; DVC's own page stays blank there."""

import configparser
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from project import run
from ruamel.yaml import YAML

from gantrack.io import images

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docs/dvc-plots-template.html"
sys.path.insert(0, str(ROOT / "scripts"))
import docs_images  # noqa: E402

CHARTS = ("Losses", "Discriminator outputs", "FID while training")  # dvc.yaml's plots


def test_the_project_names_a_template_that_carries_its_libraries():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc/config")
    named = (ROOT / ".dvc" / config["plots"]["html_template"]).resolve()  # as DVC joins it
    assert named == TEMPLATE
    page = TEMPLATE.read_text()
    assert "{plot_divs}" in page  # where DVC puts the charts
    assert "{scripts}" not in page  # DVC's CDN script tags
    assert "<script src" not in page and "//cdn" not in page
    for name in ("window.vegaEmbed", "window.vega=", "window.vegaLite="):
        assert name in page


def _charts_drawn(page_file: Path) -> tuple[list[int], list[str]]:
    """Per chart of the page opened offline, how much is drawn (SVG paths or canvas pixels);
    the addresses the page asked for."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=docs_images.chromium(), args=["--no-sandbox"])
        try:
            page = chrome.new_page()
            refused = []
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file:")
                       else (refused.append(route.request.url), route.abort()))  # fmt: skip
            page.goto(page_file.as_uri())
            page.wait_for_timeout(3000)  # charts draw in well under a second
            # DVC's div of one chart holds its script, which vega-embed replaces by the chart.
            drawn = page.evaluate("""() => [...document.querySelectorAll('body > div')]
                .filter(div => div.matches('.vega-embed') || div.querySelector('script'))
                .map(div => {  // how much is drawn: an SVG's paths, or canvas pixels
                    const c = div.querySelector('canvas');
                    if (!c || !c.width) return [...div.querySelectorAll('svg path')]
                        .filter(p => (p.getAttribute('d') || '').length > 10).length;
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; })""")
        finally:
            chrome.close()
    return drawn, refused


@pytest.mark.slow  # dvc and a browser
def test_dvc_plots_show_draws_its_charts_offline(tmp_path):
    if docs_images.chromium() is None:
        pytest.skip("no Chromium or no Playwright (scripts/setup.sh --test installs both)")
    project = tmp_path / "project"
    (project / "plots").mkdir(parents=True)
    (project / "docs").mkdir()
    for name in ("dvc.yaml", "params.yaml", "docs/dvc-plots-template.html"):
        shutil.copy(ROOT / name, project / name)
    run(project, "git", "init", "-q")
    run(project, "dvc", "init", "-q")
    shutil.copy(ROOT / ".dvc/config", project / ".dvc/config")
    fid = f"fid_classifier_n{YAML().load(ROOT / 'params.yaml')['train']['fid_samples']}"
    rows = "\n".join(f"{e},{1.5 - e / 10},{1 + e / 20},0.6,0.4,{40 / e}" for e in (1, 2, 3))
    (project / "plots/losses.csv").write_text(f"epoch,g_loss,d_loss,d_real,d_fake,{fid}\n{rows}\n")
    (project / "plots/samples").mkdir()
    for name in ("plots/samples/1.png", "plots/generated.png"):  # the two image plots
        images.save_png(project / name, np.full((8, 8, 1), 128, np.uint8))
    run(project, "dvc", "plots", "show", "-o", "offline")
    drawn, refused = _charts_drawn(project / "offline/index.html")
    assert refused == []  # nothing to fetch: all it needs is in the page
    assert len(drawn) == len(CHARTS) and min(drawn) > 5, drawn
    # DVC's own page, in the same browser: its libraries come from the network, so nothing draws.
    run(project, "dvc", "config", "--unset", "plots.html_template")
    run(project, "dvc", "plots", "show", "-o", "default")
    drawn, refused = _charts_drawn(project / "default/index.html")
    assert refused and max(drawn, default=0) == 0, (drawn, refused)
