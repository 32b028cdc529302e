"""Every flow, with each failure (both effects) and each crash at every port call it makes.

For each flow the test first runs it cleanly to list its port calls, then for every call
index N in 1..calls+1 runs it again with ``fail_at_call: N`` (``before``, then ``after``)
and with ``crash_at_call: N``, followed by ``recover: {}`` on a fresh service, and checks
the promises:

* atomic: a step that answered an error left the old CD in the tray, one that answered
  success left the new CD; a crashed step left one of the two; recovery does not move it;
* after recovery, no volume is active that no VM holds, no ``state`` marker remains, the
  metadata names what each VM holds, and metadata that is not a CD-ROM entry is unchanged
  (``invariants.violations``);
* recovery converges: a second recovery changes nothing;
* the named form of each point (``fail_at``/``crash_at`` ``{call, occurrence}`` of the N-th
  call; past the last call, an occurrence that never comes) gives the same report.

Run in process through the simulator's runner, so that it takes seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from ovirt_cdrom.adapters.faults import TracedCall
from ovirt_cdrom.adapters.memory.invariants import violations
from ovirt_cdrom.simulator import report
from ovirt_cdrom.simulator.runner import Simulation
from ovirt_cdrom.simulator.scenario import parse_scenario

from .hosts import (
    ISO_PATH,
    VDSM_450_PENDING_XML,
    VDSM_450_XML,
    VM1,
    VM2,
    A,
    B,
    change,
    scenario,
    source_of,
    vm,
)

# Cases run per (flow, injection), for the summary line (see conftest.py).
CASES: dict[str, int] = {}


@dataclass(frozen=True)
class Flow:
    vms: list[dict[str, Any]]
    target: dict[str, str] | str | None   # what VM1 is asked to hold
    extra: dict[str, Any]

    @property
    def old(self) -> str | None:
        return source_of(self.vms[0]["drives"][0]["loaded"])

    @property
    def new(self) -> str | None:
        return source_of(self.target)

    def document(self, step: dict[str, Any], recover: bool = True) -> dict[str, Any]:
        steps = [step, {"recover": {}}] if recover else [step]
        return scenario(self.vms, steps, **self.extra)


FILES = {"files": [ISO_PATH]}
FLOWS = {
    "insert": Flow([vm(VM1)], A, {}),
    "eject": Flow([vm(VM1, A)], None, {}),
    "change": Flow([vm(VM1, A)], B, {}),
    "legacy path": Flow([vm(VM1)], ISO_PATH, FILES),
    "legacy path replacing a volume": Flow([vm(VM1, A)], ISO_PATH, FILES),
    "legacy eject of a volume": Flow([vm(VM1, A)], "", {}),
    "change on a VM sharing the ISO": Flow([vm(VM1, A), vm(VM2, A)], B, {}),
    "eject on a VM sharing the ISO": Flow([vm(VM1, A), vm(VM2, A)], None, {}),
    "insert of an ISO another VM holds": Flow([vm(VM1), vm(VM2, A)], A, {}),
    "change on vdsm 4.50 metadata": Flow(
        [vm(VM1, A, metadata_xml=VDSM_450_XML)], B, {"metadata_encoding": "vdsm-4.50"}),
    # The service first recovers the leftovers (row change.3), then changes.
    "change after vdsm 4.50 died mid-change": Flow(
        [vm(VM1, A, metadata_xml=VDSM_450_PENDING_XML)], B,
        {"volumes": [A, {**B, "active": True}]}),
    "eject on vdsm 4.50 metadata": Flow(
        [vm(VM1, A, metadata_xml=VDSM_450_XML)], None, {"metadata_encoding": "vdsm-4.50"}),
}
INJECTIONS = {
    "fail before": lambda n: {"fail_at_call": n, "fail_effect": "before"},
    "fail after": lambda n: {"fail_at_call": n, "fail_effect": "after"},
    "crash": lambda n: {"crash_at_call": n},
}
FAULT_KEYS = ("fail_at_call", "fail_at", "crash_at_call", "crash_at")


def _named(numbered: dict[str, Any], trace: list[TracedCall]) -> dict[str, Any]:
    """The same point by name: the clean run's N-th call, or past its last call, one more
    occurrence of the last call's name than the step makes."""
    key = next(k for k in FAULT_KEYS if k in numbered)
    n = numbered[key]
    if n <= len(trace):
        point = {"call": trace[n - 1].call, "occurrence": trace[n - 1].occurrence}
    else:
        last = trace[-1].call
        point = {"call": last, "occurrence": sum(c.call == last for c in trace) + 1}
    out = {k: v for k, v in numbered.items() if k != key}
    out[key.removesuffix("_call")] = point
    return out


def _without_points(r: dict[str, Any]) -> dict[str, Any]:
    for step in r["steps"]:
        for key in (*FAULT_KEYS, "fail_effect"):
            step.pop(key, None)
    return r


def _trays(sim: Simulation) -> dict[str, str | None]:
    return {f"{vm_id}/{name}": d.source
            for vm_id, v in sim.host.vms.items() for name, d in v.drives.items()}


def _calls(flow: Flow) -> list[TracedCall]:
    """The port calls the flow makes without injection; it must succeed."""
    sim = Simulation(parse_scenario(flow.document(change(VM1, flow.target), False), ""))
    outcome = sim.step(sim.scenario.steps[0])
    assert outcome.ok and not outcome.injected, outcome.error
    assert _trays(sim)[f"{VM1}/sdc"] == flow.new
    assert violations(sim.host, sim.run.baseline) == []
    assert outcome.calls == len(outcome.trace)
    return outcome.trace


def _check_case(flow: Flow, injection: dict[str, Any], reached: bool
                ) -> tuple[list[str], dict[str, Any]]:
    """The problems of one case, and its whole report (trace included)."""
    step = {**change(VM1, flow.target), **injection}
    sim = Simulation(parse_scenario(flow.document(step), ""))
    before = _trays(sim)
    changed = sim.step(sim.scenario.steps[0])
    after = _trays(sim)
    problems = []
    if changed.injected != reached:
        problems.append(f"injected={changed.injected}, expected {reached}")
    held = after[f"{VM1}/sdc"]
    if changed.crashed:
        expected: tuple[str | None, ...] = (flow.old, flow.new)
    elif changed.ok:
        expected = (flow.new,)
    else:
        expected = (flow.old,)
    if held not in expected:
        outcome = ("crashed" if changed.crashed else "succeeded" if changed.ok
                   else f"failed ({changed.error})")
        problems.append(f"the step {outcome} but the tray holds {held}")
    others = {k: v for k, v in after.items() if not k.startswith(VM1)}
    if others != {k: v for k, v in before.items() if not k.startswith(VM1)}:
        problems.append(f"another VM's tray moved: {others}")
    recovered = sim.step(sim.scenario.steps[1])
    if not recovered.ok:
        problems.append(f"recovery failed: {recovered.error}")
    if _trays(sim) != after:
        problems.append(f"recovery moved a tray: {after} -> {_trays(sim)}")
    problems += violations(sim.host, sim.run.baseline, settled=True)
    again = sim.step(parse_scenario(flow.document({"recover": {}}, False), "").steps[0])
    if not again.ok or any(d.changed for d in again.recovered or ()):
        problems.append("a second recovery still changed something")
    out = report.scenario_json(sim.run, trace=True)
    json.dumps(out)  # the report renders any state
    return problems, out


@pytest.mark.parametrize("injection", INJECTIONS, ids=str)
@pytest.mark.parametrize("flow", FLOWS, ids=str)
def test_single_fault_then_recovery_keeps_every_promise(flow: str, injection: str) -> None:
    trace = _calls(FLOWS[flow])
    calls = len(trace)
    failures = []
    for n in range(1, calls + 2):
        spec = INJECTIONS[injection](n)
        problems, numbered = _check_case(FLOWS[flow], spec, n <= calls)
        named_spec = _named(spec, trace)
        named_problems, named = _check_case(FLOWS[flow], named_spec, n <= calls)
        if _without_points(named) != _without_points(numbered):
            problems.append(f"{named_spec} gave another outcome than call {n}")
        for problem in problems + named_problems:
            failures.append(f"{flow}, {injection} at call {n}: {problem}")
    CASES[f"{flow}/{injection}"] = calls + 1
    assert not failures, "\n".join(failures)


def test_every_flow_makes_port_calls_to_inject_into() -> None:
    for name, flow in FLOWS.items():
        assert len(_calls(flow)) >= 3, name
