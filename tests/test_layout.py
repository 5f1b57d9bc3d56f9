"""The package's shape as a newcomer relies on it: import rules between the packages, each
dvc.yaml stage depending on the code it runs, and one source for the files stages exchange."""

import ast
import dataclasses
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from gantrack import config
from gantrack.data import DATASETS
from gantrack.io import paths

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gantrack"
DVC = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())


def _module_file(name: str) -> Path:
    """src/gantrack/... file of a dotted gantrack module (a package's __init__.py)."""
    base = PACKAGE.joinpath(*name.split(".")[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _imports(module: str) -> set[str]:
    """gantrack modules `module` imports anywhere in its file (also inside functions)."""
    found = set()
    source = _module_file(module).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gantrack")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gantrack"):
            for alias in node.names:  # `from gantrack.gan import losses` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _module_file(sub).is_file() else node.module)
    return found - {module}


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(_imports(name))
    return seen


def _all_modules() -> list[str]:
    return [
        "gantrack."
        + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted(PACKAGE.rglob("*.py"))
    ]


LIBRARY = ("gantrack.data", "gantrack.gan", "gantrack.evaluation")
FORBIDDEN = ("mlflow", "gantrack.tracking", "gantrack.stages", "gantrack.commands",
             "gantrack.tuning", "gantrack.cli")  # fmt: skip


def _external_imports(module: str) -> set[str]:
    tree = ast.parse(_module_file(module).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize(
    "module", [m for m in _all_modules() if m.startswith(LIBRARY)], ids=lambda m: m
)
def test_library_packages_never_import_tracking_stages_or_tuning(module):
    bad = {n for n in _external_imports(module) if n.startswith(FORBIDDEN)}
    assert not bad, f"{module} imports {sorted(bad)}"


def test_tuning_reuses_the_library_not_the_stages():
    for module in (m for m in _all_modules() if m.startswith("gantrack.tuning")):
        assert not {n for n in _imports(module) if n.startswith("gantrack.stages")}, module


ENTRY_POINTS = ("gantrack.stages", "gantrack.commands", "gantrack.tuning")


def test_only_the_cli_imports_stages_commands_and_tuning():
    for module in _all_modules():
        if module.startswith(("gantrack.cli", *ENTRY_POINTS)):
            continue
        wrong = {n for n in _imports(module) if n.startswith(ENTRY_POINTS)}
        assert not wrong, f"{module} imports {sorted(wrong)}"


def test_stages_are_the_dvc_stages_and_commands_are_the_rest():
    """stages/ holds a module per dvc.yaml stage, nothing else; commands/ the user commands."""
    stages = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__"}
    assert stages == set(DVC["stages"])
    commands = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__"}
    assert commands == {"sample", "fid", "serve"}


@pytest.mark.parametrize("stage", sorted(DVC["stages"]))
def test_every_stage_depends_on_all_the_code_it_runs(stage):
    """Editing any module a stage imports (directly or not) must rerun it in `dvc repro`."""
    deps = [ROOT / d for d in DVC["stages"][stage].get("deps", [])]
    needed = {_module_file(m) for m in _closure(f"gantrack.stages.{stage}")}
    uncovered = [
        str(f.relative_to(ROOT)) for f in needed if not any(f == d or d in f.parents for d in deps)
    ]
    assert not uncovered, f"dvc.yaml stage {stage} lacks deps {sorted(uncovered)}"
    assert DVC["stages"][stage]["cmd"] == f"gantrack {stage}"


def _declared_files() -> set[str]:
    files = set()
    for stage in DVC["stages"].values():
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                files.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return files


def test_paths_are_the_files_dvc_yaml_declares():
    declared = _declared_files()
    for field in dataclasses.fields(paths.Paths):
        path = getattr(paths.PATHS, field.name)
        if field.name not in ("checkpoints", "train_lock"):  # deliberately no DVC outputs
            # a declared file, or one in a declared folder (the classifier's)
            assert {str(path), str(path.parent)} & declared, (
                f"Paths.{field.name} = {path} is not in dvc.yaml"
            )
    exchanged = {p for p in declared if not p.startswith("src/")}
    assert exchanged <= {str(getattr(paths.PATHS, f.name)) for f in dataclasses.fields(paths.Paths)}


def _registry_knobs(cls=config.Config, prefix=""):
    """(dotted knob, its choices function) of every knob whose choices are a registry's."""
    for f in dataclasses.fields(cls):
        if hasattr(f.metadata.get("choices"), "source"):
            yield f"{prefix}{f.name}", f.metadata["choices"]
        elif f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(
            f.default_factory
        ):
            yield from _registry_knobs(f.default_factory, f"{prefix}{f.name}.")


def test_config_choices_are_the_registries():
    """A name valid in params.yaml is one a registry can build, and every entry is reachable:
    each registry knob reads its choices from the registry itself."""
    import importlib

    found = dict(_registry_knobs())  # train.loss: tests/gan/test_losses.py (with its traits)
    assert set(found) == {
        "train.strategy",
        "train.augment",
        "evaluate.extractor",
        "tune.pruner",
    }
    for knob, choices in found.items():
        module, name, also = choices.source
        registry = importlib.import_module(module).__dict__[name]
        assert choices() == (*registry, *also), knob
        assert all(callable(entry) or hasattr(entry, "load")
                   for entry in registry.values()), knob  # fmt: skip
    datasets = config.DataConfig.__dataclass_fields__["dataset"].metadata["choices"]
    assert tuple(datasets) == (*DATASETS, "tfds:NAME")  # the registry, and any tfds name


def test_checking_params_imports_neither_tensorflow_nor_mlflow_nor_optuna():
    """Bad params are refused before the seconds TensorFlow, MLflow and Optuna take to import;
    prepare needs none of them."""
    import subprocess
    import sys

    heavy = "{'tensorflow', 'keras', 'mlflow', 'optuna'}"
    code = "import sys; from gantrack import config; config.load('params.yaml'); "
    code += f"print(sorted({heavy} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_modules_and_functions_stay_readable():
    """No module over 330 lines, no function over 55: each can be read at once."""
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        assert len(lines) <= 330, f"{path.relative_to(ROOT)}: {len(lines)} lines"
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 55, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"


def _config_reads(stage: str) -> set[str]:
    """The params a stage module reads: `cfg.section[.knob]` chains and the sections named in
    flat_params(cfg, "section", ...) calls."""
    tree = ast.parse(_module_file(f"gantrack.stages.{stage}").read_text())
    reads, inner = set(), set()
    for node in ast.walk(tree):  # outer nodes first: `cfg.base.seed` before `cfg.base`
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "flat_params":
            reads |= {a.value for a in node.args[1:] if isinstance(a, ast.Constant)}
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            chain = []
            while isinstance(node, ast.Attribute):
                chain.insert(0, node.attr)
                inner.add(id(node))
                node = node.value
            if isinstance(node, ast.Name) and node.id == "cfg" and chain:
                reads.add(".".join(chain[:2]))
    # A longer chain is part of a shorter one read whole.
    return {r for r in reads if not any(r.startswith(f"{o}.") for o in reads)}


@pytest.mark.parametrize("stage", sorted(DVC["stages"]))
def test_each_stage_lists_exactly_the_params_it_reads(stage):
    """dvc.yaml's params of a stage are its PARAMS (what the CLI rechecks when it ends), and
    cover what its code reads, with nothing listed that it never reads."""
    import importlib

    declared = importlib.import_module(f"gantrack.stages.{stage}").PARAMS
    assert DVC["stages"][stage]["params"] == list(declared)
    reads = _config_reads(stage)
    unlisted = {r for r in reads if not any(r == p or r.startswith(f"{p}.") for p in declared)}
    assert not unlisted, f"{stage} reads {sorted(unlisted)} without listing them"
    unread = {p for p in declared if not any(r == p or f"{r}.".startswith(f"{p}.") or
                                             p.startswith(f"{r}.") for r in reads)}  # fmt: skip
    assert not unread, f"{stage} lists {sorted(unread)} and never reads them"


def _runtime_imports(module: str) -> set[str]:
    """gantrack modules `module` imports when it runs (anywhere, also inside functions), not
    those imported under `if TYPE_CHECKING:` for annotations."""
    tree = ast.parse(_module_file(module).read_text())
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gantrack")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gantrack"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _module_file(sub).is_file() else node.module)
    return found - {module}


def test_no_import_cycles():
    """No module imports, directly or not, a module that imports it back (annotations under
    TYPE_CHECKING aside): each module can be read, and tested, after what it uses."""
    graph = {m: _runtime_imports(m) for m in _all_modules()}
    for start in graph:
        todo, seen = list(graph[start]), set()
        while todo:
            name = todo.pop()
            assert name != start, f"{start} imports itself through {sorted(seen)}"
            if name not in seen and name in graph:
                seen.add(name)
                todo += graph[name]


def test_the_fid_plot_follows_train_fid_samples(tmp_path):
    """dvc.yaml's FID plot reads the column train writes for the configured sample count."""
    import json
    import shutil
    import subprocess
    import sys

    from gantrack.evaluation.generator_fid import PeriodicFID

    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text("train:\n  fid_samples: 123\n")
    column = PeriodicFID(1, None, None, 123, 0, 1).name
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots/losses.csv").write_text(f"epoch,g_loss,d_loss,{column}\n1,1,1,5\n")
    dvc = [str(Path(sys.executable).parent / "dvc")]
    for command in (["init", "--no-scm", "-q"], ["plots", "show", "--json"]):
        out = subprocess.run([*dvc, *command], cwd=tmp_path, capture_output=True, text=True)
    plot = json.loads(out.stdout)["data"]["FID while training"][0]["content"]
    assert plot["data"]["values"][0][column] == "5"
