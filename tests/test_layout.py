"""The package's shape: modules cut along their jobs, imports flowing one way, no cycles.

Data flows recipe -> config -> data and models -> trainer -> run directory ->
probe / export. These tests read the source (no import needed) and fail on a
module over 500 lines, an import cycle, or a lower layer importing the
recipe runner, the tuner or the command line.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keras_skipae"
MAX_LINES = 500
# modules that run things: nothing below them may import them
TOP_LAYER = ("keras_skipae.recipes", "keras_skipae.tune", "keras_skipae.cli", "keras_skipae.data_cli")
LOWER_LAYERS = ("keras_skipae.runs", "keras_skipae.export", "keras_skipae.probe", "keras_skipae.data",
                "keras_skipae.models", "keras_skipae.train", "keras_skipae.kinds", "keras_skipae.factory",
                "keras_skipae.transfer", "keras_skipae.saving", "keras_skipae.arch", "keras_skipae.layers")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """keras_skipae modules imported at module level (not inside functions) by ``name``."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("keras_skipae"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("keras_skipae"):
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found.update(subs or [target])
            if len(subs) < len(node.names):
                found.add(target)
    found.discard(name)
    return {m for m in found if m in known}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _top_level_imports(name, path, known) for name, path in modules.items()}


def test_no_module_is_over_500_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (cut them along their jobs): {long}"


def test_kind_comparisons_live_only_in_the_kind_registry():
    """A branch on a model kind (``kind == "segmenter"``) belongs in kinds.py's registry, so that adding a kind
    is one entry there; other modules ask the registry (or the stage's ``is_pretrain`` ...) instead."""
    pattern = re.compile(r"kind\s*[!=]=")
    found = [f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
             for name, path in _modules().items() if name != "keras_skipae.kinds"
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "kind comparisons outside keras_skipae/kinds.py:\n" + "\n".join(found)


def test_there_are_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            # a package importing its own submodules is not a cycle unless a submodule imports the package back
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("lower", LOWER_LAYERS)
def test_lower_layers_do_not_import_the_runner(lower):
    graph = _graph()
    offenders = {m: sorted(t for t in targets if t.startswith(TOP_LAYER))
                 for m, targets in graph.items() if (m == lower or m.startswith(lower + "."))}
    offenders = {m: t for m, t in offenders.items() if t}
    assert not offenders, f"{lower} imports the runner/tuner/CLI: {offenders}"


def test_function_local_imports_are_only_for_optional_heavy_libraries():
    allowed = {"tf2onnx", "onnx", "onnxruntime", "keras_tuner", "matplotlib", "sklearn", "tensorflow_datasets",
               "ai_edge_litert", "PIL", "tensorflow_serving", "grpc", "pty", "resource", "pyarrow"}
    found = []
    for name, path in _modules().items():
        # the command line defers each sub-command's imports: a quick --help
        if name in ("keras_skipae.cli", "keras_skipae.data_cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import):
                        mods = [a.name for a in inner.names]
                    elif isinstance(inner, ast.ImportFrom):
                        mods = ["." * inner.level + (inner.module or "")]
                    else:
                        continue
                    bad = [m for m in mods if m.split(".")[0] not in allowed]
                    if bad:
                        found.append(f"{name}:{inner.lineno} {bad}")
    assert not found, "function-local imports (move them to the top of the module):\n" + "\n".join(found)


def test_importing_the_package_loads_no_optional_feature():
    code = ("import sys, keras_skipae; "
            "print(','.join(m for m in ('tf2onnx', 'keras_tuner', 'keras_skipae.export', 'keras_skipae.probe', "
            "'keras_skipae.tune', 'keras_skipae.recipes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"import keras_skipae loaded: {out.stdout.strip()}"


def test_importing_the_whole_package_starts_no_tensorflow_runtime():
    """A module-level tf.constant would start TF's eager context at import and break multi-worker set-up."""
    code = ("import importlib, pkgutil, keras_skipae; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(keras_skipae.__path__, 'keras_skipae.') "
            "if m.name != 'keras_skipae.cli']; "
            "from tensorflow.python.eager import context; "
            "print('started' if context.context()._context_handle is not None else 'clean')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "clean"


def test_building_and_loading_a_model_imports_neither_the_trainer_nor_the_data_pipelines(tmp_path):
    code = ("import sys, keras_skipae as ks; m = ks.build('classifier', 'tiny'); m.save(sys.argv[1]); "
            "ks.load(sys.argv[1]); "
            "print(','.join(n for n in ('keras_skipae.train.trainer', 'keras_skipae.train.callbacks', "
            "'keras_skipae.data', 'keras_skipae.data.pipeline', 'keras_skipae.recipes') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True,
                         timeout=300, cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"ks.build/ks.load imported {out.stdout.strip()}"
