"""The code passes its linters: `ruff check`, `ruff format --check` and `mypy`, as configured in pyproject.toml.

Each runs as CI would run it by hand, in a subprocess, and its own output is the failure message.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _assert_clean(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def test_ruff_finds_nothing_to_report():
    _assert_clean(_run("ruff", "check", "--no-cache", "."))


def test_every_file_is_formatted_as_ruff_formats_it():
    _assert_clean(_run("ruff", "format", "--check", "--no-cache", "."))


def _installed_layout(tmp_path: Path) -> Path:
    """A tree of links laid out as the installed package (pyproject's package-dir: `producer/` is imported as
    `pypi_pulse.producer`), which mypy cannot derive from the source folders themselves."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top = tmp_path / "pypi_pulse"
    top.mkdir()
    for entry in (ROOT / "pypi_pulse").iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for package, folder in package_dir.items():
        if package != "pypi_pulse":
            (top / package.split(".", 1)[1]).symlink_to(ROOT / folder)
    return tmp_path


def test_mypy_finds_no_type_errors_in_the_package_and_its_subpackages(tmp_path):
    tree = _installed_layout(tmp_path)
    proc = _run(
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(tmp_path / ".mypy_cache"),
        "-p",
        "pypi_pulse",
        cwd=tree,
    )
    _assert_clean(proc)
    assert "Success" in proc.stdout
