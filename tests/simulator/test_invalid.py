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
                     "steps[0].fail_at_call: expected an integer >= 1"),
    "fail and crash": (lambda d: d["steps"][1].update(fail_at_call=1, crash_at_call=2),
                       "steps[1].crash_at_call: a step carries fail_at_call or crash_at_call"),
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
