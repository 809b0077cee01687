"""The layering of the three subpackages, checked by walking every module.

Modules are named as they import (``sarjepa.benchmark.cell``); the rules below drop the
``sarjepa.`` prefix for brevity.

- Every module of ``benchmark``, ``pretrain`` and ``dassl_patches`` imports on its own in a fresh
  interpreter (no import cycle hides behind the order in which the rest of the code imports).
- ``pretrain`` and ``dassl_patches`` import nothing from ``benchmark`` but ``benchmark.core``;
  ``benchmark.core`` imports nothing from the rest of ``benchmark`` nor from ``pretrain`` /
  ``dassl_patches``. Checked statically on the syntax tree, so imports inside functions and
  ``importlib.import_module("...")`` calls with a literal name count too.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "pretrain", "dassl_patches")
NAMESPACE = "sarjepa"
# Below ``benchmark`` only its base package may be imported from these layers. ``benchmark``
# itself (its ``__init__`` holds nothing but ``__version__``) is allowed as ``from benchmark
# import __version__``.
CORE = "benchmark.core"


def project_modules() -> list[str]:
    """Dotted names of every module and package of the three packages, sorted.

    Walks the folders with ``pkgutil.iter_modules`` (``walk_packages`` would import every package
    into this process on the way, and the import test wants a fresh interpreter anyway).
    """
    names = []

    def walk(folder: Path, prefix: str) -> None:
        names.append(prefix)
        for info in pkgutil.iter_modules([str(folder)], prefix=f"{prefix}."):
            if info.ispkg:
                walk(folder / info.name.rpartition(".")[2], info.name)
            else:
                names.append(info.name)

    for top in PACKAGES:
        walk(ROOT / top, f"{NAMESPACE}.{top}")
    return sorted(names)


def _bare(name: str) -> str:
    """``sarjepa.benchmark.cell`` -> ``benchmark.cell`` (names outside the namespace unchanged)."""
    return name.removeprefix(f"{NAMESPACE}.")


def module_path(name: str, root: Path) -> Path:
    """File of a dotted module name below ``root`` (package -> its ``__init__.py``)."""
    path = root.joinpath(*_bare(name).split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_names(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module name ``path`` imports, anywhere in the file, with its line number.

    ``from a.b import c`` yields ``a.b.c`` (c may be a submodule), relative imports are resolved
    against ``module`` (the dotted name of ``path``), and ``importlib.import_module("x.y")`` with a
    literal string yields ``x.y``.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            out.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append((node.lineno, node.args[0].value))
    return out


def _inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_violations(root: Path, modules: list[str]) -> list[str]:
    """Imports that break the layering, as ``file:line imports name`` strings."""
    bad = []
    for module in modules:
        path = module_path(module, root)
        in_core = _inside(_bare(module), CORE)
        lower = _bare(module).split(".")[0] in ("pretrain", "dassl_patches")
        if not (in_core or lower):
            continue
        for line, full in imported_names(path, module):
            name = _bare(full)
            if name == "benchmark.__version__" or _inside(name, CORE):
                continue
            if _inside(name, "benchmark") or (
                in_core and (_inside(name, "pretrain") or _inside(name, "dassl_patches"))
            ):
                bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


def test_lower_layers_import_only_core():
    """pretrain/ and dassl_patches/ use benchmark.core only; core uses nothing above it."""
    assert layer_violations(ROOT, project_modules()) == []


def test_layer_check_sees_local_relative_and_dynamic_imports(tmp_path):
    """The static check is not blind: a fake tree with each kind of forbidden import."""
    files = {
        "pretrain/__init__.py": "",
        "pretrain/ok.py": "from benchmark.core.errors import SarjepaError\n"
        "from benchmark import __version__\n",
        "pretrain/local.py": "def f():\n    from benchmark.config import get_cfg_default\n",
        "pretrain/pkgattr.py": "from benchmark import datasets\n",
        "pretrain/dyn.py": "import importlib\nimportlib.import_module('benchmark.grid')\n",
        "benchmark/__init__.py": "",
        "benchmark/core/__init__.py": "",
        "benchmark/core/rel.py": "from ..cell import run\n",
        "benchmark/core/up.py": "import pretrain.data\n",
        "benchmark/core/fine.py": "from . import errors\nfrom .errors import SarjepaError\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules = [rel[:-3].replace("/", ".").removesuffix(".__init__") for rel in files]
    found = layer_violations(tmp_path, modules)
    assert sorted(found) == sorted(
        [
            "pretrain/local.py:2 imports benchmark.config.get_cfg_default",
            "pretrain/pkgattr.py:1 imports benchmark.datasets",
            "pretrain/dyn.py:2 imports benchmark.grid",
            "benchmark/core/rel.py:1 imports benchmark.cell.run",
            "benchmark/core/up.py:1 imports pretrain.data",
        ]
    )


# Run in a fresh interpreter: pre-import the third-party libraries the project uses (so each child
# does not pay for torch again), but no project module; then fork one child per project module,
# two at a time, that imports only that module and reports the error, if any, through a pipe.
_CHILD_RUNNER = textwrap.dedent(
    """
    import importlib, json, os, sys, traceback
    modules, third_party, tops = json.loads(sys.stdin.read())
    for name in third_party:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    assert not [m for m in sys.modules if m.split(".")[0] in tops], "project module preloaded"
    failures, running = {}, {}
    def reap():
        pid, status = os.wait()
        name, fd = running.pop(pid)
        with os.fdopen(fd) as pipe:
            message = pipe.read()
        if status != 0:
            failures[name] = message or f"child exit status {status}"
    for name in modules:
        while len(running) >= 2:
            reap()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            code = 0
            try:
                importlib.import_module(name)
            except BaseException:
                os.write(write_fd, traceback.format_exc(limit=-3).encode())
                code = 1
            os._exit(code)
        os.close(write_fd)
        running[pid] = (name, read_fd)
    while running:
        reap()
    print(json.dumps(failures))
    """
)


def third_party_imports(modules: list[str]) -> list[str]:
    """Absolute module names outside the project that the project imports (to pre-load)."""
    names = set()
    for module in modules:
        for _, name in imported_names(module_path(module, ROOT), module):
            top = name.split(".")[0]
            if top not in (NAMESPACE, *PACKAGES) and name != "__future__.annotations":
                names.add(name)
    # ``from a import b`` gave ``a.b``; b may be a class, so pre-load the module part too.
    return sorted(names | {name.rpartition(".")[0] for name in names if "." in name})


@pytest.mark.slow  # 8-9 s on 2 cores: the fresh interpreter pre-loads torch, timm, ...
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_on_its_own():
    """``import X`` alone works for every module X, each in a process that imported no other."""
    modules = project_modules()
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD_RUNNER],
        input=json.dumps([modules, third_party_imports(modules), [NAMESPACE, *PACKAGES]]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n".join(f"{name}:\n{tb}" for name, tb in failures.items())
