"""Recovery is idempotent and convergent, from every leftover state, in both encodings.

Every leftover state a crash can leave on one drive (each row of the design's recovery
table, and the states beyond it that ``converge`` handles), alone or with the volume also
held by another VM, written in either metadata encoding:

* one recovery makes the host consistent, a second one changes nothing and writes nothing;
* a crash at each call of a recovery, then a recovery, ends consistent;
* a fault (either effect) at each call of a recovery, then a recovery, ends consistent.

And two faults in a row in a change (the operation and its compensation both failing, at
every pair of calls, both effects, with and without a crash at the call after the
second): the answer still tells the truth about the tray, no active volume goes
unrecorded, and a later recovery converges.

The calls to inject at are each run's own: a clean recovery's or change's trace gives the
first points (by name and occurrence), and the trace of a run with the first fault gives
the calls a second fault can hit (its compensation's included).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from ovirt_cdrom.adapters.faults import At, Effect
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain import promises
from ovirt_cdrom.domain.errors import CdromError
from ovirt_cdrom.domain.recovery import RECOVERY_TABLE, decide
from ovirt_cdrom.domain.state import (
    EMPTY,
    Changing,
    DriveState,
    Ejecting,
    Inserting,
    Loaded,
    Switched,
)
from rig import SUCCESS, Rig, block_media

from .harness import (
    FIGURES,
    Drive,
    Layout,
    Target,
    broken,
    build_rig,
    expected_tray,
    meaning,
    points,
    spec,
    tray,
    tray_of,
    trays,
    vol,
)

A, B = 0, 1  # volume numbers: the old CD and the new one
SUBJECT, OTHER = 0, 1  # drive numbers: the drive recovered; a drive of another VM
LAYOUT: Layout = ((("sata", 2),), (), (("sata", 2),))
EFFECTS: tuple[Effect, ...] = ("before", "after")  # a fault just before or just after a call
MUTATING = ("metadata.write", "volumes.prepare", "volumes.teardown", "hypervisor.load",
            "hypervisor.eject")
STATES: dict[str, Callable[..., DriveState]] = {
    "empty": lambda: EMPTY,
    "settled": Loaded,
    "loading": Inserting,
    "ejecting": Ejecting,
    "change": Changing,      # ejecting the first, loading the second
    "switched": Switched,    # the tray switched to the first, the second to tear down
}


@dataclass(frozen=True)
class Leftover:
    slot: tuple[str, ...]       # ("loading", "B"), ("change", "A", "B")...
    tray: str | None            # "A", "B" or None
    active: frozenset[str]
    shared: str | None = None   # another VM's tray holds this volume

    def build(self, encoding: Encoding) -> tuple[Rig, list[Drive]]:
        rig, drives = build_rig(layout=LAYOUT, encoding=encoding)
        vols = {"A": vol(A), "B": vol(B)}
        kind, *names = self.slot
        for name in self.active:
            rig.add_volume(vols[name], active=True)
        subject = drives[SUBJECT]
        rig.host.put(subject.vm, subject.name,
                     block_media(vols[self.tray]) if self.tray else None)
        rig.write(subject.vm, subject.name, STATES[kind](*(vols[n] for n in names)))
        if self.shared:
            other = drives[OTHER]
            rig.hold(other.vm, vols[self.shared], other.name)
        rig.settle()
        return rig, drives

    def case(self) -> str:
        rig, drives = self.build(Encoding.DESIGN)
        d = drives[SUBJECT]
        state = rig.state(d.vm, d.name)
        active = frozenset(v for v in state.volumes if v in rig.active())
        return decide(state, tray(rig, d), active).case

    def __str__(self) -> str:
        shared = f"-shared{self.shared}" if self.shared else ""
        return (f"{'-'.join(self.slot)}-tray{self.tray or 'Empty'}"
                f"-active{''.join(sorted(self.active)) or 'None'}{shared}")


def _leftovers() -> list[Leftover]:
    slots = [("empty",), ("settled", "A"), ("loading", "B"), ("ejecting", "A"),
             ("change", "A", "B"), ("switched", "B", "A")]
    found = []
    for slot in slots:
        for held in (None, "A", "B"):
            for n in range(3):
                for active in itertools.combinations("AB", n):
                    if held is not None and held not in active:
                        continue  # a VM cannot hold an inactive volume
                    if held is not None and held not in slot[1:]:
                        continue  # a CD no entry names: see test_unnamed_cd_is_reported
                    for shared in (None, *active):
                        if not set(active) <= {*slot[1:], held, shared}:
                            continue  # unrecorded: no flow leaves it, no recovery sees it
                        found.append(Leftover(slot, held, frozenset(active), shared))
    return found


LEFTOVERS = _leftovers()
ENCODINGS = list(Encoding)


def test_every_design_recovery_row_is_covered() -> None:
    covered = {left.case() for left in LEFTOVERS}
    assert {row.case for row in RECOVERY_TABLE} <= covered
    assert "converge" in covered


def test_an_active_volume_nothing_records_is_a_leak() -> None:
    """The checker the sweeps below rely on can fail: an active volume that no tray holds
    and no metadata names is reported; one a tray holds, or metadata names, is not."""
    rig, drives = build_rig(layout=LAYOUT)
    rig.add_volume(vol(A), active=True)
    assert promises.unrecorded(rig.observe()) == [
        f"volume {vol(A)} is active, held by no VM and named by no metadata"]
    rig.write(drives[SUBJECT].vm, drives[SUBJECT].name, Ejecting(vol(A)))
    assert promises.unrecorded(rig.observe()) == []
    rig.hold(drives[OTHER].vm, vol(A), drives[OTHER].name, state=EMPTY)
    rig.write(drives[SUBJECT].vm, drives[SUBJECT].name, EMPTY)
    assert promises.unrecorded(rig.observe()) == []


def mutations(rig: Rig) -> list[str]:
    return [f"{t.call} {t.args}" for t in rig.plan.trace if t.call in MUTATING]


def assert_converged(rig: Rig, drives: list[Drive]) -> None:
    """A fault-free recovery leaves the host consistent; one more changes nothing."""
    held = trays(rig, drives)
    report = rig.recover()
    assert report is not None
    found = rig.violations(settled=True)
    assert not found, found
    assert report.clean, report
    assert trays(rig, drives) == held
    before = meaning(rig)
    again = rig.recover()
    assert again is not None and again.clean
    assert mutations(rig) == [], "a second recovery changed something"
    assert meaning(rig) == before


def recovery_points(left: Leftover, encoding: Encoding) -> list[At]:
    """Every call of a clean recovery from the leftover, by name and occurrence."""
    rig, _ = left.build(encoding)
    assert rig.recover() is not None
    return points(rig.plan)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("left", LEFTOVERS, ids=str)
def test_recovery_converges_and_second_recovery_writes_nothing(
        left: Leftover, encoding: Encoding) -> None:
    rig, drives = left.build(encoding)
    assert not promises.unrecorded(rig.observe())
    assert_converged(rig, drives)
    FIGURES["convergence: leftover states recovered"] += 1


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("left", LEFTOVERS, ids=str)
def test_crash_at_each_call_of_recovery_then_recovery_converges(
        left: Leftover, encoding: Encoding) -> None:
    for at in recovery_points(left, encoding):
        rig, drives = left.build(encoding)
        rig.plan.arm(crash=at)
        assert rig.recover() is None, f"no crash at {at}"
        FIGURES["convergence: crash points in recovery"] += 1
        assert not promises.unrecorded(rig.observe())
        assert_converged(rig, drives)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("left", LEFTOVERS, ids=str)
def test_fault_at_each_call_of_recovery_then_recovery_converges(
        left: Leftover, encoding: Encoding) -> None:
    for at, effect in itertools.product(recovery_points(left, encoding), EFFECTS):
        rig, drives = left.build(encoding)
        held = trays(rig, drives)
        rig.plan.arm(at, effect)
        try:
            rig.recover()
        except CdromError as err:  # listing the VMs failed: typed, nothing done
            assert at.call == "hypervisor.vm_ids", err
        assert rig.plan.injected, f"no fault at {at}"
        FIGURES["convergence: faults in recovery"] += 1
        assert trays(rig, drives) == held
        assert not promises.unrecorded(rig.observe())
        assert_converged(rig, drives)


# --- Two faults in a row in a change -------------------------------------------------------

STARTS = {"empty": {}, "holdsA": {SUBJECT: A}, "holdsA-sharedA": {SUBJECT: A, OTHER: A}}
TARGETS: dict[str, Target] = {"insertB": ("volume", B), "changeA": ("volume", A),
                              "eject": ("eject",), "path": ("path", 0)}


def faulted_change(start: str, cd: Target, encoding: Encoding,
                   failures: dict[At, Effect], crash: At | None = None) -> list[At]:
    """A change with ``failures`` (and a crash): the answer tells the truth about the tray,
    nothing leaks, a recovery converges. Answers the change's calls, in order."""
    rig, drives = build_rig(layout=LAYOUT, encoding=encoding, loaded=STARTS[start])
    d = drives[SUBJECT]
    before, wanted = tray(rig, d), expected_tray(cd)
    rig.plan.arm(failures=failures, crash=crash)
    answer = rig.change(d.vm, spec(d, cd))
    calls = points(rig.plan)
    assert set(failures) <= set(calls), f"not every fault of {failures} was reached"
    assert (answer is None) == (crash is not None), f"crash at {crash}: {answer}"
    now = tray(rig, d)
    if answer is None:
        assert now in (before, wanted)
    elif answer == SUCCESS:
        assert now == wanted, answer
    elif "outcome unknown" in answer["message"]:
        assert answer["code"] == 41
        assert now in (before, wanted)
    else:
        assert now == before, answer
    found = broken(rig, settled=False)
    assert not found, found
    assert_converged(rig, drives)
    return calls


def after(calls: list[At], at: At) -> list[At]:
    return calls[calls.index(at) + 1:]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("target", list(TARGETS), ids=str)
@pytest.mark.parametrize("start", list(STARTS), ids=str)
def test_two_faults_in_a_row_tell_the_truth_and_recovery_converges(
        start: str, target: str, encoding: Encoding) -> None:
    cd = TARGETS[target]
    for first, e1 in itertools.product(faulted_change(start, cd, encoding, {}), EFFECTS):
        with_first = faulted_change(start, cd, encoding, {first: e1})
        for second, e2 in itertools.product(after(with_first, first), EFFECTS):
            both = {first: e1, second: e2}
            calls = faulted_change(start, cd, encoding, both)
            FIGURES["convergence: two-fault changes"] += 1
            for crash in after(calls, second)[:1]:  # the process dies at the next call
                faulted_change(start, cd, encoding, both, crash)
                FIGURES["convergence: crash points after two faults"] += 1


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("slot", [("empty",), ("settled", "A")], ids="-".join)
def test_unnamed_cd_is_reported(slot: tuple[str, ...], encoding: Encoding) -> None:
    """The one state recovery cannot converge (docs/decisions.md D16): the tray holds a
    volume no entry names (changed behind our back). Recovery leaves the VM's CD alone and
    active, tears down what the entries name, and the checker reports the mismatch."""
    left = Leftover(slot, "B", frozenset({"A", "B"} if len(slot) > 1 else {"B"}))
    rig, drives = left.build(encoding)
    d = drives[SUBJECT]
    report = rig.recover()
    assert report is not None and report.clean
    assert tray(rig, d) == tray_of(vol(B))
    assert rig.active() == {vol(B)}
    assert rig.state(d.vm, d.name) == EMPTY
    found = rig.violations(settled=True)
    assert len(found) == 1 and "but metadata says empty" in found[0], found
