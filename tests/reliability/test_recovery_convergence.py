"""Recovery is idempotent and convergent, from every leftover state, in both encodings.

Every leftover state a crash can leave on one drive (each row of the design's recovery
table, and the states beyond it that ``_converge`` handles), alone or with the volume also
held by another VM, written in either metadata encoding:

* one recovery makes the host consistent, a second one changes nothing and writes nothing;
* a crash at each call of a recovery, then a recovery, ends consistent;
* a fault (either effect) at each call of a recovery, then a recovery, ends consistent.

And two faults in a row in a change (the operation and its compensation both failing, at
every pair of calls, both effects): the answer still tells the truth about the tray, no
active volume goes unrecorded, and a later recovery converges.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.faults import Effect, SimulatedCrash
from ovirt_cdrom.adapters.memory.invariants import violations
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain.model import CdromSlot, block_volume_path
from ovirt_cdrom.domain.recovery import RECOVERY_TABLE, Observation, decide

from .harness import FIGURES, Rig, build_rig, expected_tray, spec, unrecorded_active

A, B = 0, 1  # volume numbers: the old CD and the new one
SUBJECT, OTHER = 0, 1  # drive numbers: the drive recovered; a drive of another VM
LAYOUT = ((("sata", 2),), (), (("sata", 2),))
EFFECTS: tuple[Effect, ...] = ("before", "after")  # a fault just before or just after a call


@dataclass(frozen=True)
class Leftover:
    slot: tuple[str, ...]       # ("loading", "B"), ("change", "A", "B")...
    tray: str | None            # "A", "B" or None
    active: frozenset[str]
    shared: str | None = None   # another VM's tray holds this volume

    def build(self, encoding: Encoding) -> Rig:
        rig = build_rig(layout=LAYOUT, encoding=encoding, missing_volume=False)
        vols = {"A": rig.volumes[A], "B": rig.volumes[B]}
        kind, *names = self.slot
        v = [vols[n] for n in names]
        builders: dict[str, Callable[[], CdromSlot]] = {
                "empty": CdromSlot,
                "settled": lambda: CdromSlot(current=v[0]),
                "loading": lambda: CdromSlot(loading=v[0]),
                "ejecting": lambda: CdromSlot(current=v[0], ejecting=True),
                "change": lambda: CdromSlot(current=v[0], loading=v[1]),
                "switched": lambda: CdromSlot(current=v[0], stale=v[1])}
        slot = builders[kind]()
        host = rig.host
        for name in self.active:
            host.volumes[vols[name]] = True
        subject = rig.drives[SUBJECT]
        host.drive(subject.vm, subject.name).source = (
            block_volume_path(vols[self.tray]) if self.tray else None)
        metadata_xml.write_entries(host.vm(subject.vm).metadata, subject.name,
                                   slot.entries(), encoding)
        if self.shared:
            other = rig.drives[OTHER]
            host.drive(other.vm, other.name).source = block_volume_path(vols[self.shared])
            metadata_xml.write_entries(host.vm(other.vm).metadata, other.name,
                                       CdromSlot(current=vols[self.shared]).entries(),
                                       encoding)
        return rig

    def case(self) -> str:
        rig = self.build(Encoding.DESIGN)
        d = rig.drives[SUBJECT]
        slot = rig.slot(d)
        active = [v for v in slot.volumes if rig.host.volumes[v]]
        return decide(Observation.of(slot, rig.tray(d), active)).case

    def __str__(self) -> str:
        shared = f"-shared{self.shared}" if self.shared else ""
        return (f"{'-'.join(self.slot)}-tray{self.tray or 'Empty'}"
                f"-active{''.join(sorted(self.active)) or 'None'}{shared}")


def _leftovers() -> list[Leftover]:
    slots = [("empty",), ("settled", "A"), ("loading", "B"), ("ejecting", "A"),
             ("change", "A", "B"), ("switched", "B", "A")]
    found = []
    for slot in slots:
        for tray in (None, "A", "B"):
            for n in range(3):
                for active in itertools.combinations("AB", n):
                    if tray is not None and tray not in active:
                        continue  # a VM cannot hold an inactive volume
                    if tray is not None and tray not in slot[1:]:
                        continue  # a CD no entry names: see test_unnamed_cd_is_reported
                    for shared in (None, *active):
                        if not set(active) <= {*slot[1:], tray, shared}:
                            continue  # unrecorded: no flow leaves it, no recovery sees it
                        found.append(Leftover(slot, tray, frozenset(active), shared))
    return found


LEFTOVERS = _leftovers()
ENCODINGS = list(Encoding)


def test_every_design_recovery_row_is_covered() -> None:
    covered = {left.case() for left in LEFTOVERS}
    assert {row.case for row in RECOVERY_TABLE} <= covered
    assert "converge" in covered


def writes(rig: Rig) -> list[str]:
    return [t.args for t in rig.plan.trace if t.method == "write"]


def mutations(rig: Rig) -> list[str]:
    return [f"{t.method} {t.args}" for t in rig.plan.trace
            if t.method in ("write", "prepare", "teardown", "load", "eject")]


def assert_converged(rig: Rig) -> None:
    """A fault-free recovery leaves the host consistent; one more changes nothing."""
    trays = {str(d.key): rig.tray(d) for d in rig.drives}
    rig.plan.reset()
    report = rig.service.recover_all()
    found = violations(rig.host, rig.baseline, settled=True)
    assert not found, found
    assert report.clean, report
    assert {str(d.key): rig.tray(d) for d in rig.drives} == trays
    before = rig.meaning()
    rig.plan.reset()
    again = rig.service.recover_all()
    assert again.clean
    assert mutations(rig) == [], "a second recovery changed something"
    assert rig.meaning() == before


def recovery_calls(left: Leftover, encoding: Encoding) -> int:
    rig = left.build(encoding)
    rig.plan.reset()
    rig.service.recover_all()
    return rig.plan.calls


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("left", LEFTOVERS, ids=str)
def test_recovery_converges_and_second_recovery_writes_nothing(
        left: Leftover, encoding: Encoding) -> None:
    rig = left.build(encoding)
    assert not unrecorded_active(rig)
    assert_converged(rig)
    FIGURES["convergence: leftover states recovered"] += 1


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("left", LEFTOVERS, ids=str)
def test_crash_at_each_call_of_recovery_then_recovery_converges(
        left: Leftover, encoding: Encoding) -> None:
    calls = recovery_calls(left, encoding)
    for crash_at in range(1, calls + 1):
        rig = left.build(encoding)
        rig.plan.reset(crash_at_call=crash_at)
        with pytest.raises(SimulatedCrash):
            rig.service.recover_all()
        FIGURES["convergence: crash points in recovery"] += 1
        rig.restart()
        assert not unrecorded_active(rig)
        assert_converged(rig)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("left", LEFTOVERS, ids=str)
def test_fault_at_each_call_of_recovery_then_recovery_converges(
        left: Leftover, encoding: Encoding) -> None:
    calls = recovery_calls(left, encoding)
    for fail_at, effect in itertools.product(range(1, calls + 1), EFFECTS):
        rig = left.build(encoding)
        trays = {str(d.key): rig.tray(d) for d in rig.drives}
        rig.plan.reset(fail_at_call=fail_at, fail_effect=effect)
        try:
            rig.service.recover_all()
        except Exception as err:  # listing the VMs failed: typed, nothing done
            assert rig.plan.trace[0].method == "vm_ids", err
        FIGURES["convergence: faults in recovery"] += 1
        assert {str(d.key): rig.tray(d) for d in rig.drives} == trays
        assert not unrecorded_active(rig)
        assert_converged(rig)


# --- Two faults in a row in a change -------------------------------------------------------

STARTS = {"empty": {}, "holdsA": {SUBJECT: A}, "holdsA-sharedA": {SUBJECT: A, OTHER: A}}
TARGETS: dict[str, tuple[Any, ...]] = {"insertB": ("volume", B), "changeA": ("volume", A),
                                       "eject": ("eject",), "path": ("path", 0)}


def change_calls(start: str, target: tuple[Any, ...], encoding: Encoding) -> int:
    rig = build_rig(layout=LAYOUT, encoding=encoding, loaded=STARTS[start],
                    missing_volume=False)
    d = rig.drives[SUBJECT]
    rig.plan.reset()
    rig.api.changeCD(str(d.vm), spec(d, target, rig))
    return rig.plan.calls


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("target", list(TARGETS), ids=str)
@pytest.mark.parametrize("start", list(STARTS), ids=str)
def test_two_faults_in_a_row_tell_the_truth_and_recovery_converges(
        start: str, target: str, encoding: Encoding) -> None:
    cd = TARGETS[target]
    calls = change_calls(start, cd, encoding)
    effects: list[Effect] = ["before", "after"]
    for first, second in itertools.combinations(range(1, calls + 2), 2):
        for e1, e2 in itertools.product(effects, effects):
            for crash_after in (False, True):
                rig = build_rig(layout=LAYOUT, encoding=encoding, loaded=STARTS[start],
                                missing_volume=False)
                d = rig.drives[SUBJECT]
                before, wanted = rig.tray(d), expected_tray(cd, rig)
                rig.plan.reset(failures={first: e1, second: e2},
                               crash_at_call=second + 1 if crash_after else None)
                try:
                    answer = rig.api.changeCD(str(d.vm), spec(d, cd, rig))
                except SimulatedCrash:
                    FIGURES["convergence: crash points after two faults"] += 1
                    rig.restart()
                    assert rig.tray(d) in (before, wanted)
                else:
                    FIGURES["convergence: two-fault changes"] += 1
                    now = rig.tray(d)
                    if answer == {"vmList": {}}:
                        assert now == wanted, answer
                    elif "outcome unknown" in answer["message"]:
                        assert answer["code"] == 41
                        assert now in (before, wanted)
                    else:
                        assert now == before, answer
                found = violations(rig.host, rig.baseline, settled=False)
                found += unrecorded_active(rig)
                assert not found, found
                assert_converged(rig)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.value for e in ENCODINGS])
@pytest.mark.parametrize("slot", [("empty",), ("settled", "A")], ids="-".join)
def test_unnamed_cd_is_reported(slot: tuple[str, ...], encoding: Encoding) -> None:
    """The one state recovery cannot converge (docs/decisions.md D16): the tray holds a
    volume no entry names (changed behind our back). Recovery leaves the VM's CD alone and
    active, tears down what the entries name, and the checker reports the mismatch."""
    rig = Leftover(slot, "B", frozenset({"A", "B"} if len(slot) > 1 else {"B"})).build(encoding)
    d = rig.drives[SUBJECT]
    rig.plan.reset()
    report = rig.service.recover_all()
    assert report.clean
    assert rig.tray(d) == block_volume_path(rig.volumes[B])
    assert rig.host.active_volumes() == [rig.volumes[B]]
    assert rig.slot(d) == CdromSlot()
    found = violations(rig.host, rig.baseline, settled=True)
    assert len(found) == 1 and "but metadata says none:empty" in found[0], found
