"""Named fault points (issue 12): a step fails or crashes at the call it names.

``fail_at: {call: <port>.<method>, occurrence: N}`` (N: 1 by default), ``fail_effect``,
``crash_at: {call, occurrence}``, beside the numbered ``fail_at_call``/``crash_at_call``.
What is checked here: a named point lands on exactly the call it names, also when the
flow makes an extra read before it (the numbered form then lands elsewhere); ``injected``
is false when that occurrence never comes; the named and the numbered form of one point
give the same outcome; the report echoes the point as given. Invalid points are in
``test_invalid.py``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ovirt_cdrom.adapters.faults import CALL_NAMES, TracedCall
from ovirt_cdrom.cli import main
from ovirt_cdrom.domain.model import DriveName, VmId
from ovirt_cdrom.simulator import report
from ovirt_cdrom.simulator.runner import Simulation, StepOutcome
from ovirt_cdrom.simulator.scenario import parse_scenario

from .hosts import VM1, A, B, change, crash_at, fail_at, scenario, source_of, vm
from .test_examples import FILES

SDC = DriveName("sdc")
FAULT_KEYS = ("fail_at_call", "fail_at", "crash_at_call", "crash_at", "fail_effect")
KINDS: dict[str, Callable[[str, int], dict[str, Any]]] = {
    "fail before": lambda call, n: fail_at(call, n, "before"),
    "fail after": lambda call, n: fail_at(call, n, "after"),
    "crash": crash_at,
}
# The flows a point is put into: each as one changeCD step on VM1.
FLOWS = {
    "insert": ([vm(VM1)], A),
    "eject": ([vm(VM1, A)], None),
    "change": ([vm(VM1, A)], B),
}


def _simulation(flow: str, fault: dict[str, Any]) -> Simulation:
    vms, target = FLOWS[flow]
    return Simulation(parse_scenario(scenario(vms, [{**change(VM1, target), **fault}]), ""))


def _run(flow: str, fault: dict[str, Any], extra_read: tuple[str, int] | None = None
         ) -> tuple[StepOutcome, str | None]:
    """Run the flow's step with ``fault``; with ``extra_read`` ``(when, k)``, the step makes
    one more port call (a harmless read) ``after`` its k-th call or ``before`` it, as a
    later version of the flow might. Return the outcome and what VM1's tray holds."""
    sim = _simulation(flow, fault)
    if extra_read is not None:
        _insert_extra_read(sim, *extra_read, fault)
    outcome = sim.step(sim.scenario.steps[0])
    return outcome, sim.host.vms[VmId(VM1)].drives[SDC].source


def _insert_extra_read(sim: Simulation, when: str, at: int, fault: dict[str, Any]) -> None:
    """One extra read through the wrapped ports, of a call other than the one the point
    names (an extra call of that very name would rightly shift its occurrences)."""
    named = next((p["call"] for k, p in fault.items() if k in ("fail_at", "crash_at")), None)
    ports = sim.app.ports()
    read: Callable[[], object] = (
        (lambda: ports.hypervisor.cdrom(VmId(VM1), SDC)) if named == "metadata.read"
        else (lambda: ports.metadata.read(VmId(VM1), SDC)))
    seen = {"calls": 0, "inside": False}

    def hook(_: str) -> None:
        if seen["inside"]:
            return
        seen["calls"] += 1
        if seen["calls"] == at:
            seen["inside"] = True
            try:
                read()
            finally:
                seen["inside"] = False

    (sim.plan.before if when == "before" else sim.plan.after)("*", hook)


def _hit(outcome: StepOutcome) -> TracedCall | None:
    """The traced call the step's point landed on."""
    return next((c for c in outcome.trace
                 if c.outcome == "crash" or c.outcome.startswith("injected")), None)


def _clean_trace(flow: str) -> list[TracedCall]:
    outcome, _ = _run(flow, {})
    assert outcome.ok and not outcome.injected
    return outcome.trace


def _points() -> Iterator[Any]:
    for flow in FLOWS:
        for call in _clean_trace(flow):
            yield pytest.param(flow, call.call, call.occurrence,
                               id=f"{flow}-{call.call}#{call.occurrence}")


def _summary(outcome: StepOutcome, tray: str | None) -> tuple[object, ...]:
    err = outcome.error
    return (outcome.ok, outcome.injected, outcome.crashed, err and (err.code, err.message),
            tray)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("flow", "call", "occurrence"), list(_points()))
def test_a_named_point_lands_on_the_call_it_names_even_after_an_extra_read(
        flow: str, call: str, occurrence: int, kind: str) -> None:
    fault = KINDS[kind](call, occurrence)
    plain, plain_tray = _run(flow, fault)
    hit = _hit(plain)
    assert hit is not None and (hit.call, hit.occurrence) == (call, occurrence)
    # After each call that comes first, or in the named call's own before-hook (the
    # extra read then comes after its number was given).
    extra = [("after", k, hit.number + 1) for k in range(1, hit.number)]
    for when, k, number in [*extra, ("before", hit.number, hit.number)]:
        shifted, tray = _run(flow, fault, extra_read=(when, k))
        moved = _hit(shifted)
        where = f"extra read {when} call {k}"
        assert moved is not None, f"{where}: not injected"
        assert (moved.call, moved.occurrence, moved.number) == (call, occurrence, number), where
        assert len(shifted.trace) == len(plain.trace) + 1, where
        assert _summary(shifted, tray) == _summary(plain, plain_tray), where


def test_the_numbered_form_moves_with_an_extra_read_the_named_one_does_not() -> None:
    """Why names: a numbered point meant for the change's load lands on another call once
    the flow reads once more before it (issue 12, item 10)."""
    load = next(c for c in _clean_trace("change") if c.call == "hypervisor.load")
    numbered, _ = _run("change", {"fail_at_call": load.number}, extra_read=("after", 1))
    named, tray = _run("change", fail_at("hypervisor.load"), extra_read=("after", 1))
    numbered_hit, named_hit = _hit(numbered), _hit(named)
    assert numbered_hit is not None and numbered_hit.call != "hypervisor.load"
    assert named_hit is not None and named_hit.call == "hypervisor.load"
    assert named.error is not None and named.error.vdsm_name == "ChangeDiskFailed"
    assert tray == source_of(A)  # a failed change leaves the old CD


@pytest.mark.parametrize(("flow", "fault"), [
    ("change", fail_at("hypervisor.load", 2)),
    ("change", crash_at("metadata.write", 3)),
    ("insert", crash_at("volumes.teardown")),
    ("eject", fail_at("volumes.prepare", effect="after")),
    ("insert", fail_at("hypervisor.vm_ids")),
    ("eject", crash_at("metadata.read_all")),
], ids=lambda v: v if isinstance(v, str) else json.dumps(v, sort_keys=True))
def test_injected_is_false_when_the_occurrence_never_comes(flow: str,
                                                           fault: dict[str, Any]) -> None:
    outcome, tray = _run(flow, fault)
    assert (outcome.ok, outcome.injected, outcome.crashed) == (True, False, False)
    assert _hit(outcome) is None
    assert tray == source_of(FLOWS[flow][1])
    step = report.step_json(outcome)
    assert step["injected"] is False
    assert {k: step[k] for k in FAULT_KEYS if k in step} == _echoed(fault)


def _echoed(fault: dict[str, Any]) -> dict[str, Any]:
    """How the report echoes a step's point: as given, a named one with its occurrence, a
    failure with its effect."""
    out = {k: {"occurrence": 1, **v} if isinstance(v, dict) else v for k, v in fault.items()}
    if "fail_at" in out or "fail_at_call" in out:
        out.setdefault("fail_effect", "before")
    return out


def test_a_recover_step_takes_a_named_point_too() -> None:
    """crash_at metadata.write #2 in a recovery of two drives: the first is cleaned, the
    process dies before the second's write; the next recovery finishes it."""
    doc = scenario([vm(VM1, A, drives=[
        {"iface": "sata", "index": 2, "loaded": A,
         "metadata": [{"state": "ejecting", "pdiv": A}, {"state": "loading", "pdiv": B}]},
        {"iface": "sata", "index": 3, "loaded": None,
         "metadata": [{"state": "loading", "pdiv": B}]}])],
        [{"recover": {}, **crash_at("metadata.write", 2)}, {"recover": {}}],
        volumes=[{**A, "active": True}, {**B, "active": True}])
    run = Simulation(parse_scenario(doc, ""))
    first = run.step(run.scenario.steps[0])
    hit = _hit(first)
    assert first.crashed and hit is not None
    assert (hit.call, hit.occurrence) == ("metadata.write", 2)
    second = run.step(run.scenario.steps[1])
    assert second.ok
    r = report.scenario_json(run.run)
    assert r["final"]["promises"]["ok"], r["final"]["promises"]


def test_occurrence_is_1_by_default() -> None:
    implicit, _ = _run("change", crash_at("metadata.write"))
    explicit, _ = _run("change", crash_at("metadata.write", 1))
    assert report.step_json(implicit, trace=True) == report.step_json(explicit, trace=True)
    assert report.step_json(implicit)["crash_at"] == {"call": "metadata.write",
                                                      "occurrence": 1}


def test_the_issues_points_land_where_they_say() -> None:
    """The three lines of issue 12's example: a load that fails after it took effect, and
    a crash just before the second metadata write."""
    late, tray = _run("change", fail_at("hypervisor.load", 1, "after"))
    hit = _hit(late)
    assert hit is not None and hit.outcome.startswith("injected failure (after)")
    assert late.ok and tray == source_of(B)  # it took effect: the change succeeds
    crashed, tray = _run("change", crash_at("metadata.write", 2))
    hit = _hit(crashed)
    assert crashed.crashed and hit is not None and hit.call == "metadata.write"
    writes = [c for c in crashed.trace if c.call == "metadata.write"]
    assert [c.outcome for c in writes] == ["ok", "crash"]
    assert tray == source_of(B)


def _to_numbered(step: dict[str, Any], trace: list[dict[str, Any]]) -> dict[str, Any]:
    """The step with its named point given by number instead (from the run's trace)."""
    out = dict(step)
    for key in ("fail_at", "crash_at"):
        point = out.pop(key, None)
        if point is not None:
            want = (point["call"], point.get("occurrence", 1))
            seen: dict[str, int] = {}
            for t in trace:
                name = f"{t['port']}.{t['method']}"
                seen[name] = seen.get(name, 0) + 1
                if (name, seen[name]) == want:
                    out[f"{key}_call"] = t["call"]
                    break
            else:
                pytest.fail(f"{want} never came")
    return out


def _to_named(step: dict[str, Any], trace: list[dict[str, Any]]) -> dict[str, Any]:
    """The step with its numbered point given by name instead (from the run's trace)."""
    out = dict(step)
    for key in ("fail_at", "crash_at"):
        number = out.pop(f"{key}_call", None)
        if number is not None:
            names = [f"{t['port']}.{t['method']}" for t in trace if t["call"] <= number]
            assert len(names) == number, f"call {number} never came"
            out[key] = {"call": names[-1], "occurrence": names.count(names[-1])}
    return out


def _reports(doc: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
             ) -> list[dict[str, Any]]:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    assert main(["simulate", "--json", "--trace", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    return out if isinstance(out, list) else [out]


def _without_points(r: dict[str, Any]) -> dict[str, Any]:
    r = copy.deepcopy(r)
    for step in r["steps"]:
        for key in FAULT_KEYS:
            step.pop(key, None)
    return r


FAULTY_EXAMPLES = [p for p in FILES if any(k in p.read_text() for k in FAULT_KEYS[:4])]


@pytest.mark.parametrize("path", FAULTY_EXAMPLES, ids=lambda p: p.name)
def test_an_example_gives_the_same_outcome_with_either_form(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every shipped example with a fault point, its points rewritten in the other form
    (named as numbered and numbered as named): the same report, trace included."""
    loaded = yaml.safe_load(path.read_text())
    docs = loaded if isinstance(loaded, list) else [loaded]
    given = _reports(docs, tmp_path, capsys)
    swapped = []
    for doc, r in zip(docs, given, strict=True):
        steps = [(_to_numbered if {"fail_at", "crash_at"} & set(step) else _to_named)(
            step, out["trace"]) for step, out in zip(doc["steps"], r["steps"], strict=True)]
        swapped.append({**doc, "steps": steps})
    assert swapped != docs
    again = _reports(swapped, tmp_path, capsys)
    assert [_without_points(r) for r in again] == [_without_points(r) for r in given]
    for doc, r in zip(swapped, again, strict=True):  # each report echoes its own form
        for step, out in zip(doc["steps"], r["steps"], strict=True):
            given_point = {k: step[k] for k in FAULT_KEYS if k in step}
            assert {k: out[k] for k in FAULT_KEYS if k in out} == _echoed(given_point)


def test_the_readable_report_shows_either_form_and_whether_it_was_reached(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line per table row
    doc = scenario([vm(VM1, A)], [
        {**change(VM1, B), **crash_at("hypervisor.load")},
        {**change(VM1, B), **fail_at("hypervisor.load", 2, "after")},
        {**change(VM1, None), "fail_at_call": 5},
        {"recover": {}}])
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["simulate", "--trace", str(path)]) == 0
    out = capsys.readouterr().out
    for shown in ("crash before hypervisor.load #1", "fail hypervisor.load #2 (after) (not "
                  "reached)", "fail call 5 (before)", "Promises kept"):
        assert shown in out, shown


def test_every_call_name_the_docs_list_is_one_a_point_may_name() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text()
    for name in CALL_NAMES:
        assert f"`{name}`" in doc, name
