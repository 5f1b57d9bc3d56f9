"""The HTML template `dvc plots show` fills (docs/dvc-plots-template.html), with Vega, Vega-Lite
and vega-embed inlined so that its charts draw offline:

    pip install vl-convert-python && python scripts/plots_template.py [--out PATH]

The JavaScript is vl-convert-python's own bundle (`vl_convert.javascript_bundle`, made by the
Vega project): nothing here writes or changes JavaScript. DVC's default page loads the same
libraries from a CDN, so without network its charts stay blank. .dvc/config points
`plots.html_template` at the file; `dvc plots show --html-template PATH` names it per call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

VEGA_LITE = "5.21"  # DVC's plot templates are Vega-Lite v5 specs
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- vega-embed VERSION_EMBED, Vega VERSION_VEGA, Vega-Lite VERSION_LITE, from
         vl-convert-python VERSION_VLC: python scripts/plots_template.py -->
    <script type="text/javascript">
BUNDLE
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dvc-plots-template.html"))
    args = parser.parse_args(argv)
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    # The page is filled by plain replacement of {plot_divs}, {scripts} and {refresh_tag}, and
    # an inline script ends at the first "</script": the bundle must hold none of them.
    clash = [s for s in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}") if s in bundle]
    if clash:
        print(f"plots_template: the bundle holds {clash[0]!r}; not written", file=sys.stderr)
        return 1
    versions = {"VERSION_EMBED": vl_convert.get_vega_embed_version(),
                "VERSION_VEGA": vl_convert.get_vega_version(), "VERSION_LITE": VEGA_LITE,
                "VERSION_VLC": vl_convert.__version__}  # fmt: skip
    page = PAGE
    for key, value in versions.items():
        page = page.replace(key, value)
    args.out.write_text(page.replace("BUNDLE", bundle, 1))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
