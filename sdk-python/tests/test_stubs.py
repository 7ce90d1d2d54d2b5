"""The typed surface: ``_native.pyi`` matches the compiled module, and the package type-checks."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

SDK = REPO / "sdk-python"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=SDK, capture_output=True, text=True, check=False
    )


def test_stubs_match_the_native_module():
    result = run("mypy.stubtest", "modproxy_sdk", "--mypy-config-file", "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_and_example_pass_mypy_strict():
    result = run(
        "mypy", "python/modproxy_sdk", str(REPO / "examples" / "python-backend" / "app.py")
    )
    assert result.returncode == 0, result.stdout + result.stderr
