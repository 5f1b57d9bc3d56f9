"""`gantrack <stage>`: thin entry points. Each loads params.yaml, then calls one library function.

User errors (params, data, inputs) end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from gantrack import config
from gantrack.errors import UserError

STAGES = ("prepare", "classifier", "reference", "train", "generate", "evaluate")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gantrack", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (%(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "prepare": "dataset -> data/prepared/{train,test}.npz + meta.json",
        "classifier": "train the feature-extractor CNN -> models/classifier.keras",
        "reference": "reference feature statistics of the test split -> data/reference/",
        "train": "train the GAN (resumes after a kill) -> models/generator.keras",
        "generate": "sample images -> data/generated/samples.npz, grid PNG, GIF",
        "evaluate": "FID of the samples -> metrics/eval.json",
    }
    for stage in STAGES:
        sub.add_parser(stage, help=helps[stage])
    return parser


def _run(args: argparse.Namespace) -> None:
    cfg = config.load(args.params)  # validated before any output is touched
    from gantrack import pipeline

    stage = {"classifier": pipeline.train_classifier}.get(args.command)
    (stage or getattr(pipeline, args.command))(cfg)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ banner
    try:
        _run(args)
    except UserError as exc:
        print(f"gantrack {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
