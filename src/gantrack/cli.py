"""`gantrack <stage>`: thin entry points. Each loads params.yaml, then calls one library function.

User errors (params, data, inputs) end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace

from gantrack import config
from gantrack.errors import UserError

STAGES = ("prepare", "classifier", "reference", "train", "generate", "evaluate")


def _stage(name: str):
    """The `run` of a stage module, imported only when that stage runs (TensorFlow and
    MLflow take seconds to import; `prepare` needs neither)."""
    import importlib

    return importlib.import_module(f"gantrack.stages.{name}").run


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
    fid = sub.add_parser("fid", help="FID, KID, IS, precision/recall of B's images against A's")
    fid.add_argument("a", help="reference images: a samples .npz or a prepared split .npz")
    fid.add_argument("b", help="images to score: a samples .npz or a prepared split .npz")
    fid.add_argument("--extractor", default=None, help="classifier, inception or auto")
    fid.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tune = sub.add_parser("tune", help="Optuna search of the tune params for the lowest FID")
    tune.add_argument(
        "--apply", action="store_true", help="write the best params into --params; no trials"
    )
    tune.add_argument(
        "--create-only", action="store_true", help="create the study (before parallel workers)"
    )
    tune.add_argument(
        "--worker", type=int, default=0, help="index among parallel workers (seeds the sampler)"
    )
    return parser


def _run(args: argparse.Namespace) -> None:
    cfg = config.load(args.params)  # validated before any output is touched
    if args.command == "fid":
        _fid(args, cfg)
        return
    if args.command == "tune":
        from gantrack.tuning import study

        if args.worker < 0:
            raise UserError(f"--worker: {args.worker} is out of range; must be >= 0")
        if args.apply:
            study.apply(cfg, args.params)
        else:
            study.tune(cfg, worker=args.worker, create_only=args.create_only)
        return
    _stage(args.command)(cfg)


def _fid(args: argparse.Namespace, cfg: config.Config) -> None:
    if args.extractor is not None:
        config.check("evaluate.extractor", args.extractor, label="--extractor")
        cfg = replace(cfg, evaluate=replace(cfg.evaluate, extractor=args.extractor))
    results = _stage("fid")(args.a, args.b, cfg)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        width = max(map(len, results))
        for key, value in results.items():
            print(
                f"{key:<{width}}  {value:.6g}"
                if isinstance(value, float)
                else f"{key:<{width}}  {value}"
            )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ banner
    logging.getLogger("absl").setLevel(logging.WARNING)  # per-checkpoint chatter
    try:
        _run(args)
    except UserError as exc:
        print(f"gantrack {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
