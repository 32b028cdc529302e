"""An invalid scenario file exits 2 with a message naming the field at fault, and runs
nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from ovirt_cdrom.cli import main

from .hosts import VM1, A, change, scenario, vm
from .test_examples import simulate

VALID = scenario([vm(VM1)], [change(VM1, A), {"recover": {}}])


def _with(edit: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    edit(doc)
    return doc


def _set_index(doc: dict[str, Any]) -> None:
    doc["steps"] = [{"recover": {}}, {"recover": {}}, change(VM1, A)]
    doc["steps"][2]["changeCD"]["cdromspec"]["index"] = "two"


CASES = {
    "cdromspec index": (_set_index, "steps[2].changeCD.cdromspec.index:"),
    "drive_spec volume": (
        lambda d: d["steps"][0]["changeCD"]["cdromspec"]["drive_spec"].update(volumeID="x"),
        "steps[0].changeCD.cdromspec.drive_spec.volumeID: not a UUID"),
    "iface in a request": (
        lambda d: d["steps"][0]["changeCD"]["cdromspec"].update(iface="floppy"),
        "steps[0].changeCD.cdromspec.iface: unsupported interface"),
    "vmID": (lambda d: d["steps"][0]["changeCD"].update(vmID="vm-1"),
             "steps[0].changeCD.vmID: not a UUID"),
    "missing cdromspec": (lambda d: d["steps"][0]["changeCD"].pop("cdromspec"),
                          "steps[0].changeCD.cdromspec: missing"),
    "volume pool": (lambda d: d["volumes"][1].update(poolID=7),
                    "volumes[1].poolID: expected a UUID string"),
    "volume active": (lambda d: d["volumes"][0].update(active="yes"),
                      "volumes[0].active: expected true or false"),
    "drive iface": (lambda d: d["vms"][0]["drives"][0].update(iface="floppy"),
                    "vms[0].drives[0].iface: unsupported interface"),
    "drive index": (lambda d: d["vms"][0]["drives"][0].update(index=-1),
                    "vms[0].drives[0].index:"),
    "loaded volume": (lambda d: d["vms"][0]["drives"][0].update(loaded={"poolID": "p"}),
                      "vms[0].drives[0].loaded.poolID: not a UUID"),
    "metadata state": (
        lambda d: d["vms"][0]["drives"][0].update(metadata=[{"state": "busy", "pdiv": A}]),
        "vms[0].drives[0].metadata[0].state: expected loading, ejecting or null"),
    "metadata combination": (
        lambda d: d["vms"][0]["drives"][0].update(
            metadata=[{"state": "loading", "pdiv": A}, {"state": "loading", "pdiv": A}]),
        "vms[0].drives[0].metadata: not a state the design knows"),
    "metadata_xml": (lambda d: d["vms"][0].update(metadata_xml="<ovirt-vm:vm"),
                     "vms[0].metadata_xml: Invalid VM metadata"),
    "fail_effect": (lambda d: d["steps"][0].update(fail_at_call=2, fail_effect="sideways"),
                    "steps[0].fail_effect: expected before or after"),
    "fail_at_call": (lambda d: d["steps"][0].update(fail_at_call=0),
                     "steps[0].fail_at_call: expected an integer from 1"),
    "fail and crash": (lambda d: d["steps"][1].update(fail_at_call=1, crash_at_call=2),
                       "steps[1].crash_at_call: a step carries one of fail_at_call, fail_at, "
                       "crash_at_call, crash_at"),
    "two ops": (lambda d: d["steps"][1].update(change(VM1, None)),
                "steps[1]: a step needs exactly one of changeCD, recover"),
    "recover args": (lambda d: d["steps"][1].update(recover={"vmID": VM1}),
                     "steps[1].recover.vmID: unknown key"),
    "unknown key": (lambda d: d.update(hosts=[]), "hosts: unknown key"),
    "missing steps": (lambda d: d.pop("steps"), "steps: missing"),
    "encoding": (lambda d: d.update(metadata_encoding="vdsm-4.40"),
                 "metadata_encoding: unknown metadata encoding"),
    "files": (lambda d: d.update(files=["relative.iso"]), "files[0]: not an absolute path"),
    "duplicate vm": (lambda d: d["vms"].append(vm(VM1)), "vms[1].id: VM"),
}


# The named fault points (issue 12): an unknown name, a bad occurrence, two points in one
# step, each an invalid file naming the field.
INJECTIONS = ("fail_at_call", "fail_at", "crash_at_call", "crash_at")
POINT = {"fail_at_call": 6, "fail_at": {"call": "hypervisor.load"}, "crash_at_call": 6,
         "crash_at": {"call": "metadata.write", "occurrence": 2}}


def _point(key: str, value: object, step: int = 0) -> Any:
    return lambda d: d["steps"][step].update({key: value})


NAMED_CASES = {
    "unknown call": (_point("fail_at", {"call": "hypervisor.insert"}),
                     "steps[0].fail_at.call: unknown call 'hypervisor.insert'; expected one "
                     "of hypervisor.vm_ids"),
    "call of no port": (_point("crash_at", {"call": "load"}),
                        "steps[0].crash_at.call: unknown call 'load'"),
    "call not a string": (_point("fail_at", {"call": 6}),
                          "steps[0].fail_at.call: unknown call '6'"),
    "call missing": (_point("crash_at", {"occurrence": 2}), "steps[0].crash_at.call: missing"),
    "occurrence zero": (_point("fail_at", {"call": "hypervisor.load", "occurrence": 0}),
                        "steps[0].fail_at.occurrence: expected an integer from 1"),
    "occurrence negative": (_point("crash_at", {"call": "metadata.write", "occurrence": -2}),
                            "steps[0].crash_at.occurrence: expected an integer from 1"),
    "occurrence text": (_point("fail_at", {"call": "hypervisor.load", "occurrence": "two"}),
                        "steps[0].fail_at.occurrence: expected an integer from 1"),
    "occurrence bool": (_point("fail_at", {"call": "hypervisor.load", "occurrence": True}),
                        "steps[0].fail_at.occurrence: expected an integer from 1"),
    "occurrence float": (_point("crash_at", {"call": "hypervisor.load", "occurrence": 1.5}),
                         "steps[0].crash_at.occurrence: expected an integer from 1"),
    "occurrence huge": (_point("crash_at", {"call": "hypervisor.load", "occurrence": 10**30}),
                        "steps[0].crash_at.occurrence: expected an integer from 1 to 1000000, "
                        "got too large"),
    "point by number too": (_point("fail_at", {"call": "hypervisor.load", "number": 6}),
                            "steps[0].fail_at.number: unknown key"),
    "point as text": (_point("fail_at", "hypervisor.load:1"),
                      "steps[0].fail_at: expected a mapping, got str"),
    "effect of a crash": (lambda d: d["steps"][0].update(crash_at={"call": "hypervisor.load"},
                                                         fail_effect="after"),
                          "steps[0].fail_effect: needs fail_at_call or fail_at"),
    "effect unknown": (lambda d: d["steps"][0].update(fail_at={"call": "hypervisor.load"},
                                                      fail_effect="during"),
                       "steps[0].fail_effect: expected before or after"),
    "in a recover step": (_point("fail_at", {"call": "metadata.bogus"}, step=1),
                          "steps[1].fail_at.call: unknown call 'metadata.bogus'"),
    # Two points in one step, every pair: the second (in the order above) is named.
    **{f"{first} and {second}": (
        lambda d, first=first, second=second: d["steps"][1].update(
            {first: POINT[first], second: POINT[second]}),
        f"steps[1].{second}: a step carries one of fail_at_call, fail_at, crash_at_call, "
        f"crash_at; got {first} and {second}")
       for i, first in enumerate(INJECTIONS) for second in INJECTIONS[i + 1:]},
}
CASES.update(NAMED_CASES)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_invalid_field_is_named(case: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    edit, message = CASES[case]
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(_with(edit)))
    assert main(["simulate", "--json", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err.replace("\n", " "), err


def test_valid_baseline_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(VALID))
    assert main(["simulate", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["final"]["promises"]["ok"]


def test_list_names_the_scenario_at_fault(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = _with(lambda d: d["vms"][0]["drives"][0].update(index="x"))
    path = tmp_path / "scenarios.yaml"
    path.write_text(json.dumps([VALID, bad]))
    assert main(["simulate", str(path)]) == 2
    assert "[1].vms[0].drives[0].index:" in capsys.readouterr().err


def test_broken_yaml_through_the_command() -> None:
    done = simulate("--json", "-", stdin="name: x\nsteps: [\n")
    assert done.returncode == 2
    assert "not valid YAML" in done.stderr and done.stdout == ""


def test_missing_file_through_the_command(tmp_path: Path) -> None:
    done = simulate(str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert "cannot read" in done.stderr


def test_top_level_must_be_a_scenario_or_a_list() -> None:
    done = simulate("--json", "-", stdin="42\n")
    assert done.returncode == 2
    assert "expected a scenario" in done.stderr
