"""The architecture's rules, checked: import contracts, a pure domain, wiring in one place."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from ovirt_cdrom.container import build

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (absolute names; relative resolved)."""
    package = ["ovirt_cdrom", *path.relative_to(SRC).parent.parts]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            else:
                assert node.module is not None
                found.add(node.module)
    return found


def python_files(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


# import-linter's own entry point, run by this interpreter: no `lint-imports` on PATH needed
# (the suite may run from a venv that is not activated).
LINT_IMPORTS = ("import sys; from importlinter.cli import lint_imports_command; "
                "sys.exit(lint_imports_command())")


def test_import_linter_contracts_are_kept() -> None:
    done = subprocess.run([sys.executable, "-c", LINT_IMPORTS], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" in done.stdout and " 0 broken" in done.stdout


def test_domain_imports_only_stdlib_and_itself() -> None:
    files = python_files(SRC / "domain")
    assert files
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert (top in sys.stdlib_module_names
                    or module == "ovirt_cdrom.domain"
                    or module.startswith("ovirt_cdrom.domain.")), f"{path.name}: {module}"


def test_imported_modules_sees_what_it_must() -> None:
    # The walk above must not be vacuous: it finds lxml in the codec, and a function-level
    # import in the container.
    assert "lxml" in imported_modules(SRC / "adapters" / "metadata_xml.py")
    assert "ovirt_cdrom.domain.errors" in imported_modules(SRC / "domain" / "model.py")


def test_only_the_container_and_cli_import_dependency_injector() -> None:
    importers = {path.relative_to(SRC).as_posix() for path in python_files(SRC)
                 if any(m.split(".")[0] == "dependency_injector"
                        for m in imported_modules(path))}
    assert "container.py" in importers
    assert all(p == "container.py" or p.startswith("cli/") for p in importers), importers


def test_container_dependencies_are_satisfied() -> None:
    app = build({"adapters": "memory"})
    app.check_dependencies()
    app.core.check_dependencies()
    assert app.core.service() is app.core.service()


def test_nothing_is_built_at_import_time() -> None:
    script = textwrap.dedent("""
        import gc, importlib, pkgutil
        import ovirt_cdrom
        for mod in pkgutil.walk_packages(ovirt_cdrom.__path__, "ovirt_cdrom."):
            if mod.name.startswith(("ovirt_cdrom.adapters.libvirt", "ovirt_cdrom.__main__")):
                continue  # needs libvirt-python; runs the CLI
            try:
                importlib.import_module(mod.name)
            except ModuleNotFoundError as err:
                if err.name != "libvirt":
                    raise  # only libvirt-python is an optional extra
        from ovirt_cdrom.adapters.memory import MemoryHost
        from ovirt_cdrom.service import CdromService
        from ovirt_cdrom.ports import Hypervisor, MetadataRepository, VolumeActivator
        kinds = (MemoryHost, CdromService, Hypervisor, MetadataRepository, VolumeActivator)
        built = [type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds)]
        print(len(built), built)
        from ovirt_cdrom.container import build
        app = build()
        app.core.service()
        built = [o for o in gc.get_objects() if isinstance(o, kinds)]
        print(len(built))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "0 []", lines
    assert int(lines[1]) >= 5  # the check can see them once built
