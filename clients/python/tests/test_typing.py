"""The package is typed (py.typed, hints everywhere): mypy --strict finds nothing in it, as
installed. `make test-python` installs mypy; elsewhere the test is skipped, saying so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import intake_client


def test_the_installed_package_passes_mypy_strict(tmp_path: "os.PathLike[str]") -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (make test-python installs it)")
    package = os.path.dirname(intake_client.__file__)
    assert os.path.exists(os.path.join(package, "py.typed"))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "intake_client"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
