"""The installed distribution: one ``sarjepa`` namespace, no top-level ``benchmark``/``pretrain``.

``setup.cfg`` maps the repository root to the package ``sarjepa`` and lists its subpackages; these
tests keep that list equal to the folders, build a real wheel and import from it (a regular
install), and check the editable install this suite runs under.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOPS = ("benchmark", "pretrain", "dassl_patches")


def _declared_packages() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return sorted(p.strip() for p in cfg["options"]["packages"].splitlines() if p.strip())


def _folder_packages() -> list[str]:
    found = ["sarjepa"]
    for top in TOPS:
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            found.append("sarjepa." + ".".join(rel.parts))
    return sorted(found)


def _run(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_setup_cfg_lists_every_package_folder():
    """A new subpackage folder that setup.cfg does not list would be missing from a wheel."""
    assert _declared_packages() == _folder_packages()


def test_bare_folder_names_do_not_import(tmp_path):
    """``import benchmark`` fails from anywhere: not installed, and refused from the repo root."""
    for name in TOPS:
        outside = _run(f"import {name}", tmp_path)
        assert outside.returncode != 0 and "ModuleNotFoundError" in outside.stderr, name
        inside = _run(f"import {name}", ROOT)
        assert inside.returncode != 0, name
        assert f"import sarjepa.{name}, not {name}" in inside.stderr.strip().splitlines()[-1]
    ok = _run("import sarjepa.benchmark, sarjepa.pretrain, sarjepa.dassl_patches", tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_python_m_sarjepa_runs_the_cli(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sarjepa", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("sarjepa "), proc.stderr


@pytest.mark.slow  # builds a wheel (a few seconds) and imports torch in a fresh interpreter
def test_wheel_installs_one_namespace_with_its_configs(tmp_path):
    """A regular install: the wheel holds ``sarjepa/`` only; imports and configs work from it."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(wheels)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    no_builder = ("No module named", "invalid command 'bdist_wheel'")
    if build.returncode != 0 and any(why in build.stderr for why in no_builder):
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("sarjepa-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"sarjepa"}
    assert "sarjepa/pretrain/configs/sarjepa_tiny.yaml" in names
    assert "sarjepa/benchmark/configs/datasets/mstar_soc.yaml" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "sarjepa = sarjepa.benchmark.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what `pip install` places in site-packages
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable install's finder
    code = (
        f"SITE = {str(site)!r}\n"
        "import sarjepa, sarjepa.benchmark.cli as c\n"
        "from sarjepa.pretrain.config import load_config\n"
        "assert sarjepa.__file__.startswith(SITE), sarjepa.__file__\n"
        "load_config('sarjepa_tiny')\n"
        "c.build_parser()\n"
        "try:\n    import benchmark\nexcept ImportError:\n    pass\n"
        "else:\n    raise SystemExit('top-level benchmark importable')\n"
    )
    proc = _run(code, tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
