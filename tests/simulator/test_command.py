"""The command's contract: report keys, list in/list out, stdin, --trace, logs, speed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from ovirt_cdrom.cli import main
from ovirt_cdrom.domain.model import VmId
from ovirt_cdrom.simulator import report, runner
from ovirt_cdrom.simulator.hostjson import host_json
from ovirt_cdrom.simulator.runner import Simulation
from ovirt_cdrom.simulator.scenario import parse_scenario

from .hosts import VM1, VM2, A, B, block_path, change, crash_at, fail_at, pdiv_xml, scenario, vm
from .test_examples import EXAMPLES, simulate

CHANGE = scenario([vm(VM1, A)], [change(VM1, B)], name="change")


def test_report_keys_are_the_contract() -> None:
    done = simulate("--json", "-", stdin=json.dumps(CHANGE))
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert {"name", "steps", "final"} <= set(r)
    (step,) = r["steps"]
    assert {"op", "ok", "injected", "crashed", "error"} <= set(step)
    assert (step["op"], step["ok"], step["injected"], step["crashed"], step["error"]) == (
        "changeCD", True, False, False, None)
    assert {"vms", "volumes"} <= set(r["final"])
    vm_report = r["final"]["vms"][VM1]
    assert {"drives", "metadata_xml"} <= set(vm_report)
    assert vm_report["metadata_xml"].startswith(
        '<ovirt-vm:vm xmlns:ovirt-vm="http://ovirt.org/vm/1.0">')
    drive = vm_report["drives"]["sdc"]
    assert drive["source"] == block_path(B)
    assert drive["metadata"] == [{"state": None, "pdiv": B}]
    assert r["final"]["volumes"] == [{**A, "active": False}, {**B, "active": True}]


def test_failed_step_reports_vdsm_name_and_code() -> None:
    doc = scenario([vm(VM1, A)], [{**change(VM1, B), **fail_at("volumes.prepare")}])
    done = simulate("--json", "-", stdin=json.dumps(doc))
    (step,) = json.loads(done.stdout)["steps"]
    assert (step["ok"], step["injected"], step["crashed"]) == (False, True, False)
    assert step["error"]["code"] == 1630 and step["error"]["name"] == "CannotPrepareImage"
    assert step["error"]["message"]


def test_crashed_step_has_no_error_and_the_next_step_runs_on_a_fresh_service() -> None:
    doc = scenario([vm(VM1, A)], [{**change(VM1, B), **crash_at("hypervisor.load")},
                                  change(VM1, B)])
    r = report.scenario_json(runner.run(parse_scenario(doc, "")))
    crashed, retried = r["steps"]
    assert (crashed["ok"], crashed["injected"], crashed["crashed"], crashed["error"]) == (
        False, True, True, None)
    # The engine's retry finds the leftovers, recovers them first, then changes.
    assert retried["ok"] and r["final"]["promises"]["ok"]
    assert r["final"]["vms"][VM1]["drives"]["sdc"]["source"] == block_path(B)


def test_a_crash_left_unrecovered_is_reported_as_broken_promises() -> None:
    doc = scenario([vm(VM1, A)], [{**change(VM1, B), **crash_at("hypervisor.load")}])
    promises = report.scenario_json(runner.run(parse_scenario(doc, "")))["final"]["promises"]
    assert not promises["ok"]
    assert any("state marker" in v for v in promises["violations"])
    assert any("active but no VM holds it" in v for v in promises["violations"])


def test_injection_beyond_the_calls_is_not_injected() -> None:
    doc = scenario([vm(VM1, A)], [{**change(VM1, B), "crash_at_call": 99}])
    (step,) = report.scenario_json(runner.run(parse_scenario(doc, "")), trace=True)["steps"]
    assert step["ok"] and not step["injected"] and not step["crashed"]
    assert step["calls"] == len(step["trace"]) < 99
    assert step["crash_at_call"] == 99  # the point asked for, echoed as given


def test_a_vm_gone_during_recovery_is_reported_gone_not_failed() -> None:
    """The extra key ``gone`` of a recover step: VMs that went away meanwhile."""
    sim = Simulation(parse_scenario(scenario([vm(VM1, A), vm(VM2, B)], [{"recover": {}}]),
                                    ""))

    def destroy_vm2(_: str) -> None:
        # VM2 is destroyed while recovery looks at VM1's drives (the host listed both).
        if VmId(VM2) in sim.host.vms:
            sim.host.remove_vm(VmId(VM2))

    sim.plan.before("hypervisor.cdroms", destroy_vm2)
    outcome = sim.step(sim.scenario.steps[0])
    step = report.step_json(outcome)
    assert step["ok"] and step["error"] is None
    assert step["gone"] == [VM2]
    assert [d["vm"] for d in step["recovered"]] == [VM1]
    # A recovery with no VM gone has no such key.
    again = report.step_json(sim.step(sim.scenario.steps[0]))
    assert "gone" not in again


def test_unreadable_metadata_is_reported_and_recovered_as_case_unreadable() -> None:
    """Entries that make no sense (two ``loading`` entries for sdc): the final report says
    why (``metadata`` null, ``metadata_error``) until a recovery takes the tray as the
    truth (case ``unreadable``)."""
    loading = ''.join(f'<ovirt-vm:device devtype="disk" name="sdc" state="loading">'
                      f"{pdiv_xml(v)}</ovirt-vm:device>" for v in (A, B))
    xml = f'<ovirt-vm:vm xmlns:ovirt-vm="http://ovirt.org/vm/1.0">{loading}</ovirt-vm:vm>'
    doc = scenario([vm(VM1, A, metadata_xml=xml)], [{"recover": {}}],
                   volumes=[{**A, "active": True}, {**B, "active": True}])
    scen = parse_scenario({**doc, "steps": []}, "")
    before = host_json(runner.run(scen).host)["vms"][VM1]["drives"]["sdc"]
    assert before["metadata"] is None and before["metadata_error"]
    r = report.scenario_json(runner.run(parse_scenario(doc, "")))
    (drive,) = r["steps"][0]["recovered"]
    assert (drive["case"], drive["changed"], drive["clean"]) == ("unreadable", True, True)
    sdc = r["final"]["vms"][VM1]["drives"]["sdc"]
    assert sdc["metadata"] == [{"state": None, "pdiv": A}] and "metadata_error" not in sdc
    assert [v["active"] for v in r["final"]["volumes"]] == [True, False]
    assert r["final"]["promises"]["ok"]


def test_a_list_gives_a_list_in_order_and_trace_lists_port_calls(tmp_path: Path) -> None:
    eject = scenario([vm(VM1, A)], [change(VM1, None)], name="eject")
    path = tmp_path / "two.json"
    path.write_text(json.dumps([CHANGE, eject]))
    done = simulate("--json", "--trace", str(path))
    reports = json.loads(done.stdout)
    assert [r["name"] for r in reports] == ["change", "eject"]
    trace = reports[1]["steps"][0]["trace"]
    assert [t["call"] for t in trace] == list(range(1, len(trace) + 1))
    assert {"port", "method", "args", "outcome"} <= set(trace[0])
    assert ("hypervisor", "eject", "ok") in {(t["port"], t["method"], t["outcome"])
                                             for t in trace}


def test_verbose_logs_go_to_stderr_and_stdout_stays_json() -> None:
    doc = scenario([vm(VM1, A)], [{**change(VM1, B), **fail_at("hypervisor.load")}])
    done = subprocess.run([sys.executable, "-m", "ovirt_cdrom", "-v", "simulate", "--json", "-"],
                          input=json.dumps(doc), capture_output=True, text=True, check=False)
    assert done.returncode == 0
    json.loads(done.stdout)
    assert "INFO" in done.stderr or "WARNING" in done.stderr
    quiet = simulate("--json", "-", stdin=json.dumps(doc))
    assert quiet.stderr == ""


def test_demo_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert "changeCD" in capsys.readouterr().out


def _many(n: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        loaded = yaml.safe_load(path.read_text())
        docs.extend(loaded if isinstance(loaded, list) else [loaded])
    return [docs[i % len(docs)] for i in range(n)]


def test_five_hundred_scenarios_in_one_file_all_run(tmp_path: Path) -> None:
    """The time is printed, not asserted: speed belongs to benchmarks, not to tests that
    flake on a loaded machine (1.0-1.4 s here, see docs/simulator.md)."""
    path = tmp_path / "many.json"
    path.write_text(json.dumps(_many(500)))
    started = time.perf_counter()
    done = simulate("--json", str(path))
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    reports = json.loads(done.stdout)
    assert len(reports) == 500 and all(r["final"]["promises"]["ok"] for r in reports)
    print(f"500 scenarios: {elapsed:.2f} s")
