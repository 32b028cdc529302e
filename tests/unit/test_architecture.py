"""The architecture's rules, checked: import contracts, a pure domain, wiring in one place."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dependency_injector.errors import Error as DependencyError
from ovirt_cdrom.container import build, build_vdsm

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
TESTS = ROOT / "tests"


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


VDSM_OBJECTS = ('"Application.vdsm.domains"', '"Application.vdsm.storage"')


def test_container_dependencies_are_satisfied() -> None:
    # Only vdsm's own objects are missing from a profile built outside vdsm: the vdsm
    # profile fails loudly without them, rather than running fakes.
    app = build({"adapters": "memory"}, environ={})
    for container in (app, app.core):
        with pytest.raises(DependencyError) as exc:
            container.check_dependencies()
        undefined = str(exc.value).split("undefined dependencies: ")[1]
        assert sorted(undefined.split(", ")) == sorted(VDSM_OBJECTS), str(exc.value)
    assert app.core.service() is app.core.service()
    inside = build_vdsm(object(), object())
    inside.check_dependencies()
    inside.core.check_dependencies()


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


# --- One promise checker --------------------------------------------------------------

CHECKER_NAME = re.compile(r"(violations|promises)$")
THE_CHECKER = SRC / "domain" / "promises.py"


def _delegates_to_the_checker(fn: ast.FunctionDef) -> bool:
    """Whether ``fn``'s body, its docstring aside, is ``return promises.violations(...)``."""
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        return False
    call = body[0].value
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr == "violations" and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "promises")


def checkers(paths: list[Path]) -> dict[str, bool]:
    """Every function named like a promise checker (not a test): whether it only delegates
    to the domain's."""
    found = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                    and not node.name.startswith("test_") and CHECKER_NAME.search(node.name):
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                where = f"{shown.as_posix()}:{node.lineno} {node.name}"
                found[where] = path == THE_CHECKER or (
                    isinstance(node, ast.FunctionDef) and _delegates_to_the_checker(node))
    return found


def test_the_domains_promise_checker_is_the_only_one() -> None:
    found = checkers(python_files(SRC) + python_files(TESTS))
    assert any(where.startswith("src/domain/promises.py") for where in found)
    # The memory adapter's and the rig's `violations` are thin wrappers around it.
    assert any(where.startswith("src/adapters/memory/invariants.py") for where in found)
    assert any(where.startswith("tests/rig.py") for where in found)
    others = sorted(where for where, thin in found.items() if not thin)
    assert not others, "promise checkers besides domain/promises.py (delegate to it): " \
        + ", ".join(others)


def test_the_checker_check_sees_a_second_checker(tmp_path: Path) -> None:
    second = tmp_path / "second.py"
    second.write_text("from ovirt_cdrom.domain import promises\n\n"
                      "def violations(host):\n    return promises.violations(host)\n\n"
                      "def broken_promises(host):\n    found = []\n    return found\n")
    assert sorted(checkers([second]).values()) == [False, True]
