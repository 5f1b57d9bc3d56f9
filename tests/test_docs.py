"""The documentation as a reader follows it: every relative link and picture in the README,
CONTRIBUTING.md and docs/ points at a file that exists (and a heading, for #anchors)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces -> '-'."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_picture_exists(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is no link
    targets = [a or b for a, b in LINK.findall(text)]
    assert targets or page.name != "README.md"
    for target in targets:
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file), f"{page.name}: no heading for {target}"


def test_the_readme_fits_a_screen_or_two():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def _overrides(text: str, start: str) -> dict[str, str]:
    """The KEY=VALUE overrides of the command that starts with `start`, over its `\\` lines."""
    command = re.search(re.escape(start) + r"(?:[^\n]*\\\n)*[^\n]*", text)
    assert command, f"no {start!r}"
    return dict(re.findall(r"(?:-S )?([a-z_]+\.[a-z_.0-9]+)=(\S+)", command.group()))


def _loads(overrides: dict[str, str]):
    """params.yaml with the dotted overrides (values parsed as YAML), loaded and checked."""
    from ruamel.yaml import YAML

    from gantrack import config
    from gantrack.config import schema

    raw = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
    return config.from_dict(schema.override(raw, [f"{k}={v}" for k, v in overrides.items()]))


def test_the_long_preset_is_the_same_line_everywhere():
    """The README's long preset, docs/your-data.md's and the Makefile's (whose EMA and
    selected epoch each benchmark sets) name the same knobs and values, all valid params."""
    start = "dvc exp run -S train.epochs="
    readme = _overrides((ROOT / "README.md").read_text(), start)
    your_data = _overrides((ROOT / "docs/your-data.md").read_text(), start)
    makefile = _overrides((ROOT / "Makefile").read_text(), "LONG_PRESET = ")
    assert readme == your_data
    by_benchmark = ("train.ema_decay", "train.select")
    assert {k: v for k, v in readme.items() if k not in by_benchmark} == makefile
    assert _loads(readme).train.epochs == int(readme["train.epochs"])


def test_the_first_default_the_benchmark_compares_with_loads():
    first = _overrides((ROOT / "Makefile").read_text(), "FIRST_DEFAULT = ")
    cfg = _loads(first)
    assert (cfg.train.loss, cfg.train.augment, cfg.model.kernel_size) == ("non_saturating", (), 4)
