"""Checks of the patched vdsm, run by scripts/vdsm-upstream-tests after vdsm's own tests.

Run with vdsm's test environment (its venv, ``PYTHONPATH`` on the patched ``lib``) and:

- ``VDSM_TREE``: the patched vdsm source tree (a git repository),
- ``VDSM_BASE``: the snapshot's commit in it (what the patches apply to),
- ``VDSM_RESULTS``: the folder of the JUnit XML files of the runs, ``before-*.xml`` on
  the snapshot and ``after-*.xml`` on the patched tree,
- ``VDSM_EXPLAINED``: the file of explained before/after differences.

A test id is JUnit's ``classname::name`` with object addresses (``at 0x...``) blanked,
so that ids of parametrized tests compare between runs (the runs use
``PYTHONHASHSEED=0`` so that set reprs in ids are stable too).
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

ABSENT = "absent"
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _env(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set (run through scripts/vdsm-upstream-tests)")
    return Path(value)


def outcomes(paths: list[Path]) -> dict[str, str]:
    """Test id -> passed / failed / skipped, over the JUnit XML files ``paths``."""
    found: dict[str, str] = {}
    for path in paths:
        for case in ET.parse(path).getroot().iter("testcase"):
            state = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    state = "failed"
                elif child.tag == "skipped" and state == "passed":
                    state = "skipped"
            test_id = _ADDRESS.sub(" at 0x?", f"{case.get('classname')}::{case.get('name')}")
            if found.get(test_id) == "failed":
                continue  # a failed setup or teardown of the same test stays a failure
            found[test_id] = state
    return found


def read_explained(path: Path) -> list[tuple[str, str, str, str]]:
    """``(id pattern, before, after, reason)`` per line ``PATTERN BEFORE -> AFTER  REASON``."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.match(r"(\S+)\s+(\S+)\s+->\s+(\S+)\s+(.+)$", line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected 'ID BEFORE -> AFTER REASON'")
        pattern, before, after, reason = match.groups()
        entries.append((pattern, before, after, reason.strip()))
    return entries


def differences(before: dict[str, str], after: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    for test_id in sorted(set(before) | set(after)):
        was, now = before.get(test_id, ABSENT), after.get(test_id, ABSENT)
        if was != now:
            yield test_id, was, now


def explanation(entries: list[tuple[str, str, str, str]], test_id: str, was: str,
                now: str) -> str | None:
    for pattern, before, after, reason in entries:
        if (fnmatch.fnmatchcase(test_id, pattern) and fnmatch.fnmatchcase(was, before)
                and fnmatch.fnmatchcase(now, after)):
            return reason
    return None


def test_every_difference_before_after_is_explained() -> None:
    results = _env("VDSM_RESULTS")
    before = outcomes(sorted(results.glob("before-*.xml")))
    after = outcomes(sorted(results.glob("after-*.xml")))
    assert before and after, f"no results in {results}"
    entries = read_explained(_env("VDSM_EXPLAINED"))
    unexplained = []
    for test_id, was, now in differences(before, after):
        reason = explanation(entries, test_id, was, now)
        print(f"{test_id}: {was} -> {now}: {reason or 'UNEXPLAINED'}")
        if reason is None:
            unexplained.append(f"{test_id}: {was} -> {now}")
    assert not unexplained, "differences not in explained-differences.txt:\n" + "\n".join(
        unexplained)


def _touched_python_files() -> list[str]:
    tree, base = _env("VDSM_TREE"), os.environ.get("VDSM_BASE", "")
    assert base, "VDSM_BASE is not set"
    names = subprocess.run(
        ["git", "-C", str(tree), "diff", "--name-only", "--diff-filter=d", base, "HEAD",
         "--", "*.py"], check=True, capture_output=True, text=True).stdout.split()
    assert names, "the patches touch no Python file"
    return names


def test_touched_files_pass_black() -> None:
    """black as vdsm's tox.ini runs it: line length 79, no string normalization."""
    tree = _env("VDSM_TREE")
    proc = subprocess.run(["black", "-l", "79", "-S", "--check", "--diff",
                           *_touched_python_files()],
                          cwd=tree, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_touched_files_pass_flake8() -> None:
    """flake8 with vdsm's [flake8] section of tox.ini (found in the tree's root)."""
    tree = _env("VDSM_TREE")
    proc = subprocess.run(["flake8", *_touched_python_files()], cwd=tree,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["_change_cd", "_add_cd_change", "_apply_cd_change",
                                  "_discard_cd_change", "_recover_cdroms", "_recover_cd",
                                  "_recover_loading_cd", "_recover_ejecting_cd"])
def test_vdsm_own_cd_code_is_gone(name: str) -> None:
    from vdsm.virt import vm  # the patched tree, on PYTHONPATH

    assert not hasattr(vm.Vm, name)


def test_vdsm_changecd_and_recovery_go_through_ovirt_cdrom() -> None:
    from ovirt_cdrom.embedding import VdsmCdrom
    from vdsm import clientIF
    from vdsm.virt import cdrom

    assert cdrom.bootstrap.__module__ == "vdsm.virt.cdrom"
    source = Path(clientIF.__file__).read_text()
    assert "self.cdrom = cdrom.bootstrap(self)" in source
    assert "self.cdrom.recover_all()" in source
    vm_source = Path(_env("VDSM_TREE"), "lib/vdsm/virt/vm.py").read_text()
    assert "self.cif.cdrom.changeCD(self.id, cdromspec)" in vm_source
    assert callable(VdsmCdrom.changeCD)
