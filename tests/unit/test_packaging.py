"""Packaging: one import package, ``ovirt_cdrom``, and every subpackage listed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def listed_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages: list[str] = config["tool"]["setuptools"]["packages"]
    assert config["tool"]["setuptools"]["package-dir"] == {"ovirt_cdrom": "src"}
    return packages


def source_packages() -> set[str]:
    return {".".join(["ovirt_cdrom", *init.parent.relative_to(SRC).parts])
            for init in SRC.rglob("__init__.py")}


def test_every_package_under_src_is_listed() -> None:
    missing = source_packages() - set(listed_packages())
    assert not missing, f"add to [tool.setuptools] packages: {sorted(missing)}"


def test_every_listed_package_exists() -> None:
    assert set(listed_packages()) <= source_packages()
    assert len(listed_packages()) == len(set(listed_packages()))


def test_wheel_holds_only_ovirt_cdrom(tmp_path: Path) -> None:
    # Built from a copy, so that the shared working tree gets no build/ or egg-info.
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copytree(SRC, tree / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    out = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "-q", "-w", str(out), str(tree)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("ovirt_cdrom-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ovirt_cdrom"}, tops
    # Every source module made it in, under its package.
    for path in (tree / "src").rglob("*.py"):
        assert "ovirt_cdrom/" + path.relative_to(tree / "src").as_posix() in names, path
    assert "ovirt_cdrom/py.typed" in names
