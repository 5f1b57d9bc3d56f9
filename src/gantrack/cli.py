"""`gantrack <stage>`: thin entry points. Each loads params.yaml, then calls one library function.

User errors (params, data, inputs) end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import sys
from dataclasses import replace

from gantrack import config
from gantrack.config import schema
from gantrack.runtime import compat, redact, scratch, stop, streams
from gantrack.runtime.errors import UserError, one_line, printable

STAGES = ("prepare", "classifier", "reference", "train", "generate", "evaluate")


def _module(package: str, name: str):
    """gantrack.<package>.<name> (a stage or a command), imported only when it runs (TensorFlow
    and MLflow take seconds to import; `prepare` needs neither)."""
    import importlib

    return importlib.import_module(f"gantrack.{package}.{name}")


def _run_stage(name: str, cfg: config.Config, params: str) -> None:
    """Run a DVC stage, then recheck that the params it read are still those in the params
    file: DVC records the file's values once the stage ends, and they must be the ones used."""
    module = _module("stages", name)
    module.run(cfg)
    try:
        now = config.load(params)
    except UserError as exc:
        raise UserError(f"{params} changed while {name} ran and is now invalid ({exc}); fix it "
                        f"and run the stage again") from None  # fmt: skip
    changed = schema.changed(cfg, now, module.PARAMS)
    if changed:
        raise UserError(f"{params}: {', '.join(changed)} changed while {name} ran; its outputs "
                        "are for the old values and DVC would record the new ones: run it "
                        "again")  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error contract: one line on stderr, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog.split()[0]} --help\n")


DESCRIPTION = """\
Train and judge DCGANs. The commands below are the pipeline's stages (`dvc repro` runs every
stage whose inputs changed), plus sampling, FID and tuning. Every knob is in params.yaml."""

EXAMPLES = """\
examples:
  dvc repro                      run the pipeline (a killed run resumes where it stopped)
  gantrack train                 one stage
  gantrack sample --model models:/gantrack-generator@champion -n 64 --out grid.png
  gantrack sample --interpolate --out walk.gif    latent walks, animated
  gantrack fid data/prepared/test.npz data/generated/samples.npz
  gantrack serve -p 5001         the champion as a REST service (MLflow's model server)
  gantrack tune                  Optuna search; then `gantrack tune --apply` writes the winner
  mlflow ui --backend-store-uri sqlite:///mlflow.db     review runs at http://127.0.0.1:5000"""


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gantrack", description=DESCRIPTION, epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--params", default="params.yaml", help="params file (%(default)s)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, TensorFlow's own messages"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    helps = {
        "prepare": "dataset -> data/prepared/{train,test}.npz + meta.json",
        "classifier": "train the feature-extractor CNN -> models/classifier/ (labelled data only)",
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
    fid.add_argument(
        "--extractor", default=None, help="auto, classifier, inception or inception_fid"
    )
    fid.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _sample_parser(sub)
    serve = sub.add_parser("serve", help="a REST server of a generator, checked before it runs")
    serve.add_argument(
        "--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/generator "
        "(default: models:/<tracking.registered_model>@champion)",
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument("-p", "--port", type=int, default=5001, help="port (%(default)s)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (%(default)s)")
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


def _sample_parser(sub) -> None:
    """`gantrack sample` and its options."""
    sample = sub.add_parser("sample", help="new images from a generator -> a PNG grid or npz")
    sample.add_argument(
        "--model", default="models/generator.keras",
        help="a .keras file, models:/NAME@champion, models:/NAME/VERSION or "
        "runs:/RUN_ID/generator (%(default)s)",
    )  # fmt: skip
    sample.add_argument(
        "-n", type=int, help="how many images (64); with --interpolate, how many walks (8)"
    )
    sample.add_argument("--seed", type=int, default=0, help="noise seed (%(default)s)")
    sample.add_argument(
        "--out", default="samples.png",
        help=".png grid, .npz, or with --interpolate .gif (an animation) (%(default)s)",
    )  # fmt: skip
    sample.add_argument(
        "--class", dest="label", type=int, metavar="C",
        help="only class C (0-based) of a class-conditional generator",
    )  # fmt: skip
    sample.add_argument(
        "--truncation", type=float, metavar="T",
        help="truncation trick: every noise entry redrawn until |z| <= T (T > 0)",
    )  # fmt: skip
    sample.add_argument(
        "--interpolate", action="store_true",
        help="latent walks: one row per walk, a slerp between two seeded noise vectors",
    )  # fmt: skip
    sample.add_argument("--steps", type=int, help="with --interpolate: images per walk (8)")


def _run(args: argparse.Namespace) -> int | None:
    cfg = config.load(args.params)  # validated before any output is touched
    redact.add_secrets_in(cfg)  # e.g. the password of a tune.storage URL
    if args.command == "fid":
        _fid(args, cfg)
        return
    if args.command == "sample":
        from pathlib import Path

        _module("commands", "sample").run(
            args.model, args.n, Path(args.out), args.seed, cfg, args.label,
            truncation=args.truncation, interpolate=args.interpolate, steps=args.steps,
        )  # fmt: skip
        print(printable(args.out))
        return
    if args.command == "serve":
        return _serve(args, cfg)
    if args.command == "tune":
        from gantrack.tuning import study

        if args.worker < 0:
            raise UserError(f"--worker: {args.worker} is out of range; must be >= 0")
        if args.apply:
            study.apply(cfg, args.params)
        else:
            study.tune(cfg, worker=args.worker, create_only=args.create_only)
        return
    _run_stage(args.command, cfg, args.params)


def _serve(args: argparse.Namespace, cfg: config.Config) -> int:
    for name, value, low, high in (("--port", args.port, 1, 65535),
                                   ("--workers", args.workers, 1, 64)):  # fmt: skip
        if not low <= value <= high:
            raise UserError(f"{name}: {value} is out of range; must be in {low}..{high}")
    model = args.model
    if model is None:
        if not cfg.tracking.registered_model:
            raise UserError("--model: required with tracking.registered_model null")
        model = f"models:/{cfg.tracking.registered_model}@champion"
    return _module("commands", "serve").run(model, args.host, args.port, args.workers)


def _fid(args: argparse.Namespace, cfg: config.Config) -> None:
    if args.extractor is not None:
        config.check("evaluate.extractor", args.extractor, label="--extractor")
        cfg = replace(cfg, evaluate=replace(cfg.evaluate, extractor=args.extractor))
    results = _module("commands", "fid").run(args.a, args.b, cfg)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        from gantrack.evaluation import scoring

        print(scoring.table(results))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gantrack")
    except PackageNotFoundError:
        return "unknown"


# Libraries' loggers whose chatter a user cannot act on (without --verbose)
# (mlflow.store.db.utils logs a database error's traceback, then raises it: the error's line)
QUIET_LOGGERS = {"absl": logging.WARNING, "alembic": logging.WARNING, "urllib3": logging.ERROR,
                 "mlflow.store.db.utils": logging.CRITICAL,
                 "mlflow.utils.databricks_utils": logging.ERROR}  # fmt: skip


_started_in = ["the working folder"]  # main's working folder, named if it is deleted meanwhile


def main(argv: list[str] | None = None) -> int:
    streams.install()  # first: every line printed from here on is masked, libraries' too
    with contextlib.suppress(OSError):
        _started_in[0] = os.getcwd()
    args = _parser().parse_args(argv)
    compat.lean_keras_import()
    temporary = scratch.install()  # this process's temporary files, removed however it ends
    compat.private_keras_home(str(temporary.parent))  # Keras' cache: kept for the next command
    if not args.verbose:
        # TensorFlow's C++ side prints banners (oneDNN, CPU features, absl) and spurious errors
        # (grappler's remapper) to stderr; level 3 keeps only fatal ones. Read once, when
        # TensorFlow is first imported: nothing has imported it yet.
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL") not in ("0", "1", "2", "3"):  # unset or odd
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        compat.quiet_tensorflow_import()
    handler = logging.StreamHandler()
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(streams.MaskingFormatter(log_format))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    if not args.verbose:
        # Chatter a user cannot act on: per-checkpoint notes, the store's table creation,
        # connection retries (a store that stays unreachable ends in one error line).
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when MLflow loads
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # on stderr
        for name, level in QUIET_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
    # train stops at a batch boundary, keeping its last checkpoint; the rest stop at once.
    stop.install(deferred=args.command == "train")
    try:
        stop.raise_if_requested()  # one held while the CLI loaded (gantrack/__main__.py)
        code = _run(args)
    except UserError as exc:
        return _error(args.command, f"error: {exc}", 2)
    except (stop.Stopped, KeyboardInterrupt) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        reason = str(exc) or "stopped by Ctrl-C (SIGINT)"
        kept = (
            "; the last checkpoint is kept: run it again to resume"
            if args.command == "train"
            else ""
        )
        return _error(args.command, f"{reason}{kept}", 128 + signum)
    except MemoryError:
        return _error(args.command, "error: out of memory; lower the batch or sample sizes", 2)
    except Exception as exc:
        return _failure(args.command, exc)
    return code or 0


def _failure(command: str, exc: Exception) -> int:
    """One line for a failure of what the command works on (its folder deleted, a full disk,
    the MLflow store gone) and its exit code; anything else is raised on, a bug."""
    try:
        os.getcwd()
    except FileNotFoundError:  # the project, with everything written there
        return _error(command, f"error: {printable(_started_in[0])} was deleted while it ran", 1)
    if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
        return _disk_error(command, exc)
    if not _tracking_failure(exc):
        raise exc
    # The store went away mid-run: nothing is lost (checkpoints stay); say so in one line.
    store, why = os.environ.get("MLFLOW_TRACKING_URI", "(default)"), redact.mask(one_line(exc))
    return _error(command, f"error: MLflow store {store} failed ({why[:300]}); what was done "
                  "is kept: run it again once the store is back", 1)  # fmt: skip


# A full disk, a read-only project or folder, a quota, a file-size limit, a folder that
# refuses new files (/proc) or was deleted meanwhile: the user's to fix.
DISK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG,
               errno.ENOENT}  # fmt: skip


def _disk_error(command: str, exc: OSError) -> int:
    where = f" {printable(str(exc.filename))}" if exc.filename else ""
    if exc.errno == errno.ENOENT:
        return _error(command, f"error: cannot create{where} ({exc.strerror}); write elsewhere", 2)
    return _error(command, f"error: cannot write{where} ({exc.strerror}); free space or make it "
                  "writable, then run it again", 2)  # fmt: skip


def _error(command: str, message: str, code: int) -> int:
    """Print `gantrack COMMAND: message` as one line on stderr (secrets masked, control
    characters escaped) and return the exit code."""
    print(printable(redact.mask(f"gantrack {command}: {message}")), file=sys.stderr)
    return code


def _tracking_failure(exc: BaseException) -> bool:
    """Whether exc comes from talking to the MLflow store (MLflow, requests, urllib3)."""
    modules = {cls.__module__.split(".")[0] for cls in type(exc).__mro__}
    return bool(modules & {"mlflow", "requests", "urllib3"})


if __name__ == "__main__":
    sys.exit(main())
