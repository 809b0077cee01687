"""CPU settings chosen for small shared boxes: OpenMP wait policy of the ``sarjepa`` command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import os, sarjepa.benchmark.cli; print(os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "PASSIVE"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
        ({"GOMP_SPINCOUNT": "1000"}, None),
    ],
)
def test_cli_sets_a_passive_openmp_wait_policy_unless_the_user_chose(env, expected):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(expected)


def test_cli_module_imports_no_torch():
    """The policy is read when torch loads OpenMP, so the CLI module must import before torch."""
    code = "import sys, sarjepa.benchmark.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
