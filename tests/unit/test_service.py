"""CdromService over the in-memory host (``tests/rig.py``): what it looks at before a flow,
leftovers recovered first, volumes shared between VMs, one operation per drive at a time,
and every crash point of every flow followed by recovery.

Recovery runs as at host start: a fresh service over the same host (``rig.recover()``).
"""

from __future__ import annotations

import contextlib
import threading

import pytest
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain.errors import CdromError, DriveBusy, MigrationInProgress
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    CdTarget,
    DriveName,
    Eject,
    LoadVolume,
    VolumeRef,
    VolumeTray,
)
from ovirt_cdrom.domain.state import (
    EMPTY,
    Changing,
    DriveState,
    Ejecting,
    Inserting,
    Loaded,
    Switched,
)
from ovirt_cdrom.service import Outcome
from rig import SDC, SDD, Rig, spec, vm_id, volume

A, B = volume("a"), volume("b")
VM1, VM2 = vm_id(1), vm_id(2)
ENCODINGS = list(Encoding)
EFFECTS = ("metadata.write", "volumes.prepare", "volumes.teardown", "hypervisor.load",
           "hypervisor.eject")
# What the service asks before it runs a flow: migrating? what is in the tray? what does
# the metadata say?
LOOKS = ["hypervisor.is_migrating", "hypervisor.cdrom", "metadata.read"]
FLOWS: dict[str, tuple[VolumeRef | None, CdTarget]] = {
    "insert": (None, LoadVolume(A)),
    "change": (A, LoadVolume(B)),
    "eject": (A, Eject()),
}


def tray(volume: VolumeRef) -> VolumeTray:
    return VolumeTray(volume.domain_id, volume.image_id, volume.volume_id)


def effects(rig: Rig) -> list[str]:
    return [call for call in rig.calls() if call in EFFECTS]


def make_rig(held: VolumeRef | None = None, encoding: Encoding = Encoding.VDSM_450,
             drives: tuple[tuple[str, int], ...] = (("sata", 2),)) -> Rig:
    """VM1 with its drive holding ``held`` (loaded through the service), A and B on the
    host."""
    rig = Rig(encoding=encoding)
    rig.add_vm(VM1, drives=drives)
    rig.add_volume(A)
    rig.add_volume(B)
    if held is not None:
        rig.change_cd(VM1, LoadVolume(held))
    rig.settle()
    return rig


def target_volume(target: CdTarget) -> VolumeRef | None:
    return target.volume if isinstance(target, LoadVolume) else None


# --- What the service looks at before a flow ----------------------------------------------


@pytest.mark.parametrize("flow", FLOWS)
def test_the_service_looks_at_the_drive_then_runs_the_flow(flow: str) -> None:
    start, target = FLOWS[flow]
    rig = make_rig(start)
    outcome = rig.change_cd(VM1, target)
    calls = rig.calls()
    assert calls[:len(LOOKS)] == LOOKS
    assert not set(calls[:len(LOOKS)]) & set(EFFECTS)
    assert outcome.changed and outcome.clean and not outcome.recovered
    new = target_volume(target)
    assert rig.tray(VM1) == (EMPTY_TRAY if new is None else tray(new))
    assert rig.active() == ({new} if new else set())
    assert rig.state(VM1) == (EMPTY if new is None else Loaded(new))
    assert rig.violations() == []


def test_an_eject_leaves_the_empty_entry() -> None:
    rig = make_rig(A)
    rig.change_cd(VM1, Eject())
    block = rig.host.vm(VM1).metadata.element()
    assert metadata_xml.has_elements(block, SDC)
    assert metadata_xml.read(block, SDC) == EMPTY


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
def test_flows_leave_unrelated_metadata_unchanged(encoding: Encoding) -> None:
    rig = make_rig(encoding=encoding)
    for target in (LoadVolume(A), LoadVolume(B), Eject()):
        rig.change_cd(VM1, target)
        assert rig.violations() == []  # includes: metadata that is not ours is unchanged
    assert rig.observe().unrelated_changed == ()


def test_a_change_to_what_the_drive_holds_only_looks() -> None:
    rig = make_rig(A)
    outcome = rig.change_cd(VM1, LoadVolume(A))
    assert outcome == Outcome(Loaded(A), changed=False)
    assert rig.calls() == LOOKS  # the subject: a no-op asks three things, nothing more


def test_an_eject_of_an_empty_tray_writes_nothing() -> None:
    rig = make_rig()
    outcome = rig.change_cd(VM1, Eject())
    assert not outcome.changed
    assert effects(rig) == []


def test_a_migrating_vm_is_refused_before_anything() -> None:
    rig = Rig()
    rig.add_vm(VM1, migrating=True)
    rig.add_volume(B)
    rig.hold(VM1, A)
    rig.settle()
    with pytest.raises(MigrationInProgress) as exc:
        rig.change_cd(VM1, LoadVolume(B))
    assert exc.value.code == 51
    assert rig.calls() == ["hypervisor.is_migrating"]  # the subject: nothing else asked
    assert rig.tray(VM1) == tray(A) and rig.active() == {A}
    assert rig.violations() == []


# --- Leftovers of an interrupted operation are recovered first ------------------------------


def insert_left_half_done(rig: Rig) -> None:
    """A crash left an insert of B half done: B active and marked loading, the tray empty
    (the design's insert.2)."""
    rig.add_volume(B, active=True)
    rig.write(VM1, SDC, Inserting(B))


def test_leftovers_are_recovered_before_a_new_change() -> None:
    rig = make_rig()
    insert_left_half_done(rig)
    outcome = rig.change_cd(VM1, LoadVolume(A))
    assert outcome.recovered and outcome.clean
    calls = rig.calls()
    assert calls.index("volumes.teardown") < calls.index("volumes.prepare")
    assert rig.active() == {A}
    assert rig.violations() == []


def test_leftovers_that_cannot_be_cleaned_refuse_the_change() -> None:
    rig = make_rig()
    insert_left_half_done(rig)
    rig.fail("volumes.teardown")
    with pytest.raises(DriveBusy) as exc:
        rig.change_cd(VM1, LoadVolume(A))
    assert exc.value.code == 100
    assert "volumes.prepare" not in rig.calls()
    assert rig.tray(VM1) == EMPTY_TRAY and rig.state(VM1) == Inserting(B)


PENDING: dict[str, tuple[VolumeRef | None, DriveState, set[VolumeRef]]] = {
    "inserting": (None, Inserting(B), {B}),
    "ejecting": (A, Ejecting(A), {A}),
    "changing": (B, Changing(A, B), {A, B}),
    "switched": (B, Switched(B, A), {A, B}),
}


@pytest.mark.parametrize("name", PENDING)
def test_nothing_begins_while_a_change_is_pending(name: str) -> None:
    held, state, active = PENDING[name]
    rig = Rig()
    rig.add_vm(VM1)
    for v in (A, B):
        rig.add_volume(v, active=v in active)
    rig.hold(VM1, held, state=state)
    rig.add_volume(volume("c"))
    rig.settle()
    written: list[DriveState] = []
    rig.after("metadata.write", lambda _name: written.append(rig.state(VM1)))
    outcome = rig.change_cd(VM1, LoadVolume(volume("c")))
    # The drive is first settled on what its tray holds, then the change starts from there.
    assert outcome.recovered and outcome == Outcome(Loaded(volume("c")), recovered=True)
    settled = EMPTY if held is None else Loaded(held)
    assert written[0] == settled
    assert written[1] == (Inserting(volume("c")) if held is None
                          else Changing(held, volume("c")))
    assert rig.active() == {volume("c")}
    assert rig.violations() == []


# --- Two VMs sharing a volume ------------------------------------------------------------


def two_vms_holding_a() -> Rig:
    rig = make_rig()
    rig.add_vm(VM2)
    rig.change_cd(VM1, LoadVolume(A))
    rig.change_cd(VM2, LoadVolume(A))
    rig.settle()
    return rig


def test_an_eject_of_a_shared_volume_leaves_it_active_for_the_other_vm() -> None:
    rig = two_vms_holding_a()
    rig.change_cd(VM1, Eject())
    assert rig.active() == {A}
    assert rig.tray(VM2) == tray(A)
    assert rig.state(VM1) == EMPTY and rig.state(VM2) == Loaded(A)
    assert rig.violations() == []
    rig.change_cd(VM2, Eject())
    assert rig.active() == set()
    assert rig.violations() == []


def test_a_shared_volume_is_not_torn_down_while_another_vm_loads_it() -> None:
    rig = make_rig()
    rig.add_vm(VM2)
    rig.change_cd(VM2, LoadVolume(A))
    entered, go = threading.Event(), threading.Event()

    def pause_first_load(_name: str) -> None:
        if not entered.is_set():
            entered.set()
            assert go.wait(10)
    rig.before("hypervisor.load", pause_first_load)
    errors: list[BaseException] = []

    def insert_vm1() -> None:
        try:
            rig.service.change_cd(VM1, SDC, LoadVolume(A))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
    t = threading.Thread(target=insert_vm1)
    t.start()
    assert entered.wait(10)  # VM1 prepared A and is about to load it
    rig.change_cd(VM2, Eject())  # VM2 lets go of A meanwhile
    assert "volumes.teardown" not in rig.calls()  # VM1 still needs it
    go.set()
    t.join(10)
    assert not errors
    assert rig.tray(VM1) == tray(A) and rig.active() == {A}
    assert rig.violations() == []


def test_recovery_does_not_tear_down_a_volume_another_vm_holds() -> None:
    rig = two_vms_holding_a()
    # VM1 dies while ejecting A, after the eject (A stays: VM2 uses it), before the final
    # write: the marker stays, its tray is empty (eject.2); VM2 still holds A.
    rig.crash("metadata.write", 2)
    assert rig.change(VM1, spec(None)) is None
    assert rig.tray(VM1) == EMPTY_TRAY and rig.state(VM1) == Ejecting(A)
    report = rig.recover()
    assert report is not None and report.clean
    assert rig.active() == {A}
    assert rig.state(VM1) == EMPTY
    assert rig.violations() == []


# --- One operation per drive at a time --------------------------------------------------


def test_calls_on_one_drive_wait_for_each_other() -> None:
    rig = make_rig(drives=(("sata", 2), ("sata", 3)))
    entered, go = threading.Event(), threading.Event()
    log: list[tuple[str, str]] = []

    def record(name: str) -> None:
        log.append((threading.current_thread().name, name))

    def pause_first_prepare(_name: str) -> None:
        if not entered.is_set():
            entered.set()
            assert go.wait(10)
    rig.before("*", record)
    rig.before("volumes.prepare", pause_first_prepare)
    results: dict[str, object] = {}

    def change(name: str, drive: DriveName, target: CdTarget) -> threading.Thread:
        def run() -> None:
            try:
                results[name] = rig.service.change_cd(VM1, drive, target)
            except BaseException as err:  # pragma: no cover - reported below
                results[name] = err
        t = threading.Thread(target=run, name=name)
        t.start()
        return t

    first = change("first", SDC, LoadVolume(A))
    assert entered.wait(10)
    second = change("second", SDC, LoadVolume(A))
    # Another drive is not held up by the paused one.
    change("other", SDD, LoadVolume(B)).join(10)
    second.join(0.5)
    assert second.is_alive(), "the second call on the drive did not wait"
    assert [n for t, n in log if t == "second"] == []
    go.set()
    first.join(10)
    second.join(10)
    by_thread = [t for t, _ in log if t in ("first", "second")]
    assert by_thread == sorted(by_thread), log  # every call of first before any of second
    first_result, second_result = results["first"], results["second"]
    assert isinstance(first_result, Outcome) and first_result.changed
    assert isinstance(second_result, Outcome)
    assert not second_result.changed  # started from what the first left: a no-op
    assert isinstance(results["other"], Outcome)
    assert rig.tray(VM1, SDD) == tray(B)
    assert rig.violations() == []


# --- Every crash point, then recovery; every failure, then the engine's retry ---------------


def named_points(flow: str) -> list[tuple[str, int]]:
    """Every call of the flow's fault-free run, by name and occurrence within the step."""
    start, target = FLOWS[flow]
    rig = make_rig(start)
    rig.change_cd(VM1, target)
    return [(at.call, at.occurrence) for at in rig.call_points() if at.call is not None]


CRASH_POINTS = [(flow, call, n) for flow in FLOWS for call, n in named_points(flow)]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
@pytest.mark.parametrize(("flow", "call", "occurrence"), CRASH_POINTS,
                         ids=[f"{f}-before-{c}#{n}" for f, c, n in CRASH_POINTS])
def test_a_crash_then_recovery_keeps_the_promises(flow: str, call: str, occurrence: int,
                                                  encoding: Encoding) -> None:
    start, target = FLOWS[flow]
    rig = make_rig(start, encoding)
    rig.crash(call, occurrence)
    assert rig.change(VM1, spec(target_volume(target))) is None  # the process died there
    report = rig.recover()
    assert report is not None and report.clean, report
    assert rig.violations() == []


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
@pytest.mark.parametrize("flow", FLOWS)
def test_no_crash_then_recovery_finds_nothing_to_do(flow: str, encoding: Encoding) -> None:
    start, target = FLOWS[flow]
    rig = make_rig(start, encoding)
    assert rig.change(VM1, spec(target_volume(target))) == {"vmList": {}}
    report = rig.recover()
    assert report is not None and report.clean
    assert all(not d.changed and d.case is None for d in report.drives)
    assert rig.violations() == []


@pytest.mark.parametrize("flow", FLOWS)
def test_a_failed_change_then_the_engines_retry_succeeds(flow: str) -> None:
    """After any failed call, the same request again (the engine's retry) succeeds."""
    start, target = FLOWS[flow]
    for call, occurrence in named_points(flow):
        rig = make_rig(start)
        rig.fail(call, occurrence)
        with contextlib.suppress(CdromError):
            rig.change_cd(VM1, target)
        rig.change_cd(VM1, target)
        new = target_volume(target)
        assert rig.tray(VM1) == (EMPTY_TRAY if new is None else tray(new)), (call, occurrence)
        assert rig.violations() == [], (call, occurrence)
