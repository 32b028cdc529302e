"""The before/after comparison of scripts/vdsm-upstream-tests (integration/vdsm/checks_test.py).

The script runs vdsm's tests on the vdsm snapshot before and after integration/vdsm/*.patch
and fails on any difference that integration/vdsm/explained-differences.txt does not
explain; these tests check that comparison on JUnit files made here, and that the
explained-differences file the script reads parses.
"""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTEGRATION = ROOT / "integration" / "vdsm"


def _checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vdsm_checks", INTEGRATION / "checks_test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = _checks()


def _junit(path: Path, cases: str) -> Path:
    path.write_text(f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
    return path


def test_outcomes_read_each_state_and_blank_object_addresses(tmp_path: Path) -> None:
    report = _junit(tmp_path / "r.xml", """
        <testcase classname="tests.virt.a_test" name="test_ok"/>
        <testcase classname="tests.virt.a_test" name="test_bad"><failure message="x"/></testcase>
        <testcase classname="tests.virt.a_test" name="test_skip"><skipped message="s"/></testcase>
        <testcase classname="tests.virt.a_test" name="test_fn(&lt;function f at 0x7f12ab&gt;)"/>
        <testcase classname="tests.virt.a_test" name="test_err"><error message="e"/></testcase>
        <testcase classname="tests.virt.a_test" name="test_err"/>
    """)

    found = checks.outcomes([report])

    assert found == {
        "tests.virt.a_test::test_ok": "passed",
        "tests.virt.a_test::test_bad": "failed",
        "tests.virt.a_test::test_skip": "skipped",
        "tests.virt.a_test::test_fn(<function f at 0x?>)": "passed",
        # An error in teardown reported beside the passed call stays a failure.
        "tests.virt.a_test::test_err": "failed",
    }


def test_differences_name_new_gone_and_changed_tests() -> None:
    before = {"a": "passed", "b": "failed", "c": "passed"}
    after = {"a": "passed", "b": "passed", "d": "passed"}

    assert list(checks.differences(before, after)) == [
        ("b", "failed", "passed"), ("c", "passed", "absent"), ("d", "absent", "passed")]


@pytest.mark.parametrize("test_id, was, now, explained", [
    ("tests.virt.cd_test::test_new[x-1]", "absent", "passed", True),
    ("tests.virt.cd_test::test_new[x-1]", "absent", "failed", False),
    ("tests.virt.cd_test::test_race", "failed", "passed", True),
    ("tests.virt.cd_test::test_race", "passed", "failed", False),
    ("tests.virt.other_test::test_new", "absent", "passed", False),
], ids=["new-passes", "new-fails", "race-fixed", "race-broken", "other-module"])
def test_explanation_matches_id_and_both_states(test_id: str, was: str, now: str,
                                                explained: bool) -> None:
    entries = [("tests.virt.cd_test::test_new*", "absent", "passed", "new"),
               ("tests.virt.cd_test::test_race", "*", "passed", "race fixed")]

    assert (checks.explanation(entries, test_id, was, now) is not None) is explained


def test_read_explained_refuses_a_line_without_states(tmp_path: Path) -> None:
    path = tmp_path / "explained.txt"
    path.write_text("# comment\n\ntests.virt.a_test::test_x  passed  a reason\n")

    with pytest.raises(ValueError, match=r"explained\.txt:3"):
        checks.read_explained(path)


def test_the_explained_differences_file_parses_and_gives_reasons() -> None:
    entries = checks.read_explained(INTEGRATION / "explained-differences.txt")

    assert entries
    states = {"passed", "failed", "skipped", "absent", "*"}
    for pattern, before, after, reason in entries:
        assert pattern.startswith("tests."), pattern
        assert before in states and after in states, (pattern, before, after)
        assert len(reason.split()) >= 3, (pattern, reason)


def test_the_series_and_the_script_are_in_place() -> None:
    patches = sorted(INTEGRATION.glob("*.patch"))
    assert [p.name[:4] for p in patches] == ["0001", "0002", "0003", "0004"]
    for patch in patches:
        assert patch.read_text().startswith("From "), patch  # git format-patch output
    script = ROOT / "scripts" / "vdsm-upstream-tests"
    assert os.stat(script).st_mode & stat.S_IXUSR
