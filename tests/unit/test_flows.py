"""The design's flows (``service/flows.py``) on the in-memory host: each list in the design's
order, every failure branch and its compensation, the read-back after a media change that
timed out, and recovery of what a flow left.

Faults are named by the call they mean (``rig.fail("hypervisor.load", effect="after")``).
Each test checks the outcome, what the tray holds, the drive's state, the active volumes
and the product's promise checker (``rig.violations()``). Exact port calls are looked at
only where the design's order is the subject, and then only the calls that change
something (``effects``): a harmless extra read changes nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from ovirt_cdrom.adapters.faults import At, Effect
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain.errors import (
    CannotPrepareImage,
    CdromError,
    ChangeDiskFailed,
    GeneralException,
    ImageFileNotFound,
)
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    CdTarget,
    Eject,
    FileTray,
    LoadPath,
    LoadVolume,
    Tray,
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
    consistent,
)
from ovirt_cdrom.service import Outcome
from ovirt_cdrom.service.flows import READ_BACK_ATTEMPTS
from rig import Rig, legacy_path, vm_id, volume

A, B = volume("a"), volume("b")  # the CD in the tray, the CD the engine asks for
ISO, ISO2 = legacy_path("fedora"), legacy_path("debian")
VM, VM2 = vm_id("vm"), vm_id("other-vm")
ENCODINGS = list(Encoding)

WRITE, PREPARE, TEARDOWN = "metadata.write", "volumes.prepare", "volumes.teardown"
LOAD, EJECT, LOOK = "hypervisor.load", "hypervisor.eject", "hypervisor.cdrom"
EFFECTS = (WRITE, PREPARE, TEARDOWN, LOAD, EJECT)
# The service looks at the tray once before the flow runs: the flow's read-back after a
# media change is the step's next look.
READ_BACK = 2

Held = VolumeRef | str | None  # what a tray holds: a volume, a legacy file, nothing


def tray_with(held: Held) -> Tray:
    if isinstance(held, VolumeRef):
        return VolumeTray(held.domain_id, held.image_id, held.volume_id)
    return FileTray(held) if held else EMPTY_TRAY


@dataclass(frozen=True)
class Case:
    """A request on a drive: what the tray holds before, what the engine asks for."""

    name: str
    held: Held
    target: CdTarget
    after: Held                 # what the tray holds when the call succeeds
    writes: tuple[DriveState, ...]  # the states the flow writes on success, in order
    effects: tuple[str, ...]    # the calls that change something, in the design's order
    media: str                  # the media change: hypervisor.load or hypervisor.eject

    @property
    def before(self) -> DriveState:
        return Loaded(self.held) if isinstance(self.held, VolumeRef) else EMPTY

    @property
    def final(self) -> DriveState:
        return Loaded(self.after) if isinstance(self.after, VolumeRef) else EMPTY

    @property
    def pending(self) -> DriveState:
        """The markers the flow writes first (the state before, if it writes none)."""
        return self.writes[0] if self.writes else self.before

    def rig(self, encoding: Encoding = Encoding.VDSM_450) -> Rig:
        return rig_holding(self.held, encoding=encoding)


def rig_holding(held: Held, state: DriveState | None = None,
                active: frozenset[VolumeRef] = frozenset(),
                encoding: Encoding = Encoding.VDSM_450) -> Rig:
    """VM's drive holding ``held`` (a volume is active), its metadata naming it (or saying
    ``state``); A and B on the host, ``active`` of them active. Without ``held`` or
    ``state`` the metadata has no entry for the drive at all."""
    rig = Rig(encoding=encoding)
    rig.add_vm(VM)
    for v in (A, B):
        rig.add_volume(v, active=v in active)
    if held is not None or state is not None:
        rig.hold(VM, held, state=state)
    rig.settle()
    return rig


CASES = [
    # VM with empty tray, insert CD: steps 2 (mark loading), 3 (prepare), 4 (load),
    # 5 (remove the state).
    Case("insert", None, LoadVolume(B), B, (Inserting(B), Loaded(B)),
         (WRITE, PREPARE, LOAD, WRITE), LOAD),
    # VM with loaded CD, changeCD: 2.-3. (one write), 4 (prepare), 5 (load), 7 (tear down
    # the old CD, before the final write), 6.+8. (one write).
    Case("change", A, LoadVolume(B), B, (Changing(A, B), Loaded(B)),
         (WRITE, PREPARE, LOAD, TEARDOWN, WRITE), LOAD),
    # VM with loaded CD, eject CD: 2 (mark ejecting), 3 (eject), 4 (tear down), 5 (remove
    # the entry).
    Case("eject", A, Eject(), None, (Ejecting(A), EMPTY),
         (WRITE, EJECT, TEARDOWN, WRITE), EJECT),
    # The legacy route: a volume the path replaces is marked and torn down as in an eject
    # (D8); a file replacing a file or nothing writes no metadata, as vdsm did.
    Case("path-over-volume", A, LoadPath(ISO), ISO, (Ejecting(A), EMPTY),
         (WRITE, LOAD, TEARDOWN, WRITE), LOAD),
    Case("path-into-empty", None, LoadPath(ISO), ISO, (), (LOAD,), LOAD),
    Case("path-over-path", ISO, LoadPath(ISO2), ISO2, (), (LOAD,), LOAD),
    Case("eject-path", ISO, Eject(), None, (), (EJECT,), EJECT),
]
BY_NAME = {case.name: case for case in CASES}
VOLUME_FLOWS = [c for c in CASES if c.writes]  # the flows that write markers


def effects(rig: Rig) -> list[str]:
    """The step's calls that change something, in order (reads left out)."""
    return [call for call in rig.calls() if call in EFFECTS]


def after(rig: Rig, call: str) -> list[str]:
    """The step's calls after the first ``call``."""
    calls = rig.calls()
    return calls[calls.index(call) + 1:]


def injected(rig: Rig) -> list[str]:
    """Where the step's faults landed."""
    return [c.call for c in rig.plan.trace if c.outcome.startswith("injected")]


def record_writes(rig: Rig) -> list[DriveState]:
    """From now on, the drive's state after each metadata write that took effect."""
    written: list[DriveState] = []
    rig.after(WRITE, lambda _name: written.append(rig.state(VM)))
    return written


def check(rig: Rig, held: Held, state: DriveState, active: set[VolumeRef],
          settled: bool = True) -> None:
    """The drive holds ``held``, its metadata says ``state``, ``active`` are the active
    volumes, and the promises hold (``settled=False``: those of every instant)."""
    assert rig.tray(VM) == tray_with(held)
    assert rig.state(VM) == state
    assert rig.active() == active
    assert rig.violations(settled) == []


def recovered(rig: Rig, case: str, held: Held, state: DriveState) -> None:
    """A recovery (a fresh service, as at host start) acts on row ``case`` and leaves the
    drive holding ``held``, named by ``state``, nothing else active, no promise broken."""
    report = rig.recover()
    assert report is not None and report.clean, report
    assert [d.case for d in report.drives] == [case]
    check(rig, held, state, {held} if isinstance(held, VolumeRef) else set())


def active_of(held: Held) -> set[VolumeRef]:
    return {held} if isinstance(held, VolumeRef) else set()


# --- Each flow runs the design's steps in order --------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_flow_runs_the_designs_steps_in_order(case: Case) -> None:
    rig = case.rig()
    written = record_writes(rig)
    outcome = rig.change_cd(VM, case.target)
    assert outcome == Outcome(case.final)  # changed, clean, nothing recovered first
    assert written == list(case.writes)  # at most two writes: the markers, the final state
    assert effects(rig) == list(case.effects)  # one media change
    check(rig, case.after, case.final, active_of(case.after))


@pytest.mark.parametrize("case", [c for c in CASES if isinstance(c.target, LoadPath)],
                         ids=lambda c: c.name)
def test_a_legacy_path_is_checked_before_anything_changes(case: Case) -> None:
    rig = case.rig()
    rig.change_cd(VM, case.target)
    calls = rig.calls()
    assert calls.index("volumes.resolve_path") < min(calls.index(c) for c in effects(rig))


def test_a_missing_legacy_file_changes_nothing() -> None:
    case = BY_NAME["path-over-volume"]
    rig = case.rig()
    rig.host.files = set()  # no legacy file exists on this host
    with pytest.raises(ImageFileNotFound) as exc:
        rig.change_cd(VM, case.target)
    assert exc.value.code == 13
    assert effects(rig) == []
    check(rig, A, Loaded(A), {A})


@pytest.mark.parametrize(("held", "target"), [
    (A, LoadVolume(A)),
    (None, Eject()),
    (ISO, LoadPath(ISO)),
], ids=["same-volume", "eject-empty", "same-path"])
def test_a_drive_already_there_is_left_alone(held: Held, target: CdTarget) -> None:
    rig = rig_holding(held)
    before = rig.state(VM)
    outcome = rig.change_cd(VM, target)
    assert outcome == Outcome(before, changed=False)
    assert effects(rig) == []
    check(rig, held, before, active_of(held))


# --- Before the tray switches: a failure restores the old state and fails the call -----------


@pytest.mark.parametrize("effect", ["before", "after"])
@pytest.mark.parametrize("case", VOLUME_FLOWS, ids=lambda c: c.name)
def test_the_markers_cannot_be_written_the_old_state_is_put_back(case: Case,
                                                                 effect: Effect) -> None:
    rig = case.rig()
    written = record_writes(rig)
    rig.fail(WRITE, effect=effect)
    with pytest.raises(GeneralException) as exc:
        rig.change_cd(VM, case.target)
    assert type(exc.value) is GeneralException and exc.value.code == 100
    # D7: the write may have taken effect (a timeout): the old state is written again.
    assert effects(rig) == [WRITE, WRITE]
    assert written == ([case.pending] if effect == "after" else []) + [case.before]
    check(rig, case.held, case.before, active_of(case.held))


def test_the_markers_and_their_undo_both_fail_recovery_drops_them() -> None:
    case = BY_NAME["change"]
    rig = case.rig()
    rig.fail_many({At(WRITE, 1): "after", At(WRITE, 2): "before"})
    with pytest.raises(GeneralException):
        rig.change_cd(VM, case.target)
    assert PREPARE not in rig.calls()
    check(rig, A, Changing(A, B), {A}, settled=False)
    recovered(rig, "change.2", A, Loaded(A))


@pytest.mark.parametrize("effect", ["before", "after"])
@pytest.mark.parametrize("name", ["insert", "change"])
def test_prepare_fails_the_new_volume_is_torn_down_and_the_entry_restored(
        name: str, effect: Effect) -> None:
    case = BY_NAME[name]
    rig = case.rig()
    written = record_writes(rig)
    rig.fail(PREPARE, effect=effect)  # after: it activated the volume, then failed
    with pytest.raises(CannotPrepareImage) as exc:
        rig.change_cd(VM, case.target)
    assert exc.value.code == 1630
    # D5: a failed prepare may have activated the volume: it is torn down, then unmarked.
    assert effects(rig) == [WRITE, PREPARE, TEARDOWN, WRITE]
    assert written == [case.pending, case.before]
    check(rig, case.held, case.before, active_of(case.held))


@pytest.mark.parametrize(("name", "row"), [("insert", "insert.2"), ("change", "change.3")])
def test_prepare_and_its_teardown_fail_the_loading_marker_stays(name: str, row: str) -> None:
    case = BY_NAME[name]
    rig = case.rig()
    rig.fail_many({At(PREPARE): "after", At(TEARDOWN): "before"})
    with pytest.raises(CannotPrepareImage):
        rig.change_cd(VM, case.target)
    # D6: the marker names the volume that stays active, so that recovery tears it down.
    assert effects(rig) == [WRITE, PREPARE, TEARDOWN]
    check(rig, case.held, case.pending, active_of(case.held) | {B}, settled=False)
    recovered(rig, row, case.held, case.before)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_media_change_fails_the_read_back_shows_the_old_cd_and_the_flow_undoes(
        case: Case) -> None:
    rig = case.rig()
    written = record_writes(rig)
    rig.fail(case.media)
    with pytest.raises(ChangeDiskFailed) as exc:
        rig.change_cd(VM, case.target)
    assert exc.value.code == 41
    assert after(rig, case.media)[0] == LOOK  # D1: the drive is read back
    # Undone: a volume prepared for it torn down, the old state written back.
    undo = [TEARDOWN, WRITE] if isinstance(case.target, LoadVolume) else \
        [WRITE] if case.writes else []
    assert effects(rig)[effects(rig).index(case.media) + 1:] == undo
    assert written == ([case.pending, case.before] if case.writes else [])
    check(rig, case.held, case.before, active_of(case.held))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_media_change_times_out_but_took_effect_the_flow_goes_on(case: Case) -> None:
    rig = case.rig()
    written = record_writes(rig)
    rig.fail(case.media, effect="after")  # a timeout: the tray switched all the same
    outcome = rig.change_cd(VM, case.target)
    assert outcome == Outcome(case.final)
    assert injected(rig) == [case.media]
    assert after(rig, case.media)[0] == LOOK  # the read-back saw the new CD
    assert effects(rig) == list(case.effects)
    assert written == list(case.writes)
    check(rig, case.after, case.final, active_of(case.after))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_read_back_fails_once_then_answers(case: Case) -> None:
    rig = case.rig()
    rig.fail_many({At(case.media): "after", At(LOOK, READ_BACK): "after"})
    outcome = rig.change_cd(VM, case.target)
    assert outcome == Outcome(case.final)
    assert injected(rig) == [case.media, LOOK]
    assert after(rig, case.media)[:2] == [LOOK, LOOK]
    check(rig, case.after, case.final, active_of(case.after))


@pytest.mark.parametrize("effect", ["before", "after"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_read_back_fails_every_time_the_markers_stay_for_recovery(
        case: Case, effect: Effect) -> None:
    rig = case.rig()
    looks: dict[At, Effect] = {At(LOOK, READ_BACK + n): "after"
                               for n in range(READ_BACK_ATTEMPTS)}
    rig.fail_many({At(case.media): effect, **looks})
    with pytest.raises(ChangeDiskFailed) as exc:
        rig.change_cd(VM, case.target)
    assert "unknown" in exc.value.message
    # D1: nothing more is done; what the tray holds is known only to the hypervisor.
    assert after(rig, case.media) == [LOOK] * READ_BACK_ATTEMPTS
    held = case.after if effect == "after" else case.held
    state = case.pending
    active = active_of(case.held) | ({B} if isinstance(case.target, LoadVolume) else set())
    check(rig, held, state, active, settled=False)
    report = rig.recover()
    assert report is not None and report.clean
    final = Loaded(held) if isinstance(held, VolumeRef) else EMPTY
    check(rig, held, final, active_of(held))


# --- After the tray switched: nothing fails the call; leftovers keep their markers -------------


@pytest.mark.parametrize(("name", "row"), [
    ("change", "change.4"), ("eject", "eject.2"), ("path-over-volume", "eject.2")])
def test_the_old_cd_cannot_be_torn_down_the_call_succeeds_and_the_markers_stay(
        name: str, row: str) -> None:
    case = BY_NAME[name]
    rig = case.rig()
    rig.fail(TEARDOWN)
    outcome = rig.change_cd(VM, case.target)
    # D3: the tray holds the new CD: success, but not clean; recovery tears the old down.
    assert outcome == Outcome(case.pending, clean=False)
    assert effects(rig) == list(case.effects[:-1])  # no final write
    check(rig, case.after, case.pending, active_of(case.after) | {A}, settled=False)
    recovered(rig, row, case.after, case.final)


@pytest.mark.parametrize("name", ["eject", "path-over-volume"])
def test_the_old_cd_in_use_by_another_vm_is_left_to_it(name: str) -> None:
    case = BY_NAME[name]
    rig = case.rig()
    rig.add_vm(VM2)
    rig.hold(VM2, A)  # another VM holds A open: LVM refuses to deactivate it
    rig.settle()
    outcome = rig.change_cd(VM, case.target)
    # D4: "in use" is not a failure: the other VM's volume stays, the call is clean.
    assert outcome == Outcome(EMPTY)
    assert effects(rig)[-2:] == [TEARDOWN, WRITE]
    check(rig, case.after, EMPTY, {A})
    assert rig.tray(VM2) == tray_with(A)


@pytest.mark.parametrize(("name", "row"), [
    ("insert", "insert.1"), ("change", "change.4"), ("eject", "eject.3"),
    ("path-over-volume", "eject.3")])
def test_the_final_write_fails_the_call_succeeds_not_clean(name: str, row: str) -> None:
    case = BY_NAME[name]
    rig = case.rig()
    rig.fail(WRITE, 2)
    outcome = rig.change_cd(VM, case.target)
    assert outcome == Outcome(case.final, clean=False)
    # The markers name every volume that may be active (D2); the old one is torn down.
    check(rig, case.after, case.pending, active_of(case.after), settled=False)
    recovered(rig, row, case.after, case.final)


def test_an_eject_whose_undo_cannot_be_written_is_left_to_recovery() -> None:
    case = BY_NAME["eject"]
    rig = case.rig()
    rig.fail_many({At(EJECT): "before", At(WRITE, 2): "before"})
    with pytest.raises(ChangeDiskFailed):
        rig.change_cd(VM, case.target)
    check(rig, A, Ejecting(A), {A}, settled=False)
    recovered(rig, "eject.1", A, Loaded(A))


@pytest.mark.parametrize("call", [LOAD, LOOK])
def test_a_vm_that_goes_away_during_an_insert_leaves_no_volume_active(call: str) -> None:
    case = BY_NAME["insert"]
    rig = case.rig()
    rig.fail(LOAD)  # the load fails; the VM is gone before the next look at it
    gone: list[bool] = []

    def destroy(_name: str) -> None:
        if not gone and PREPARE in rig.calls():
            gone.append(True)
            rig.host.remove_vm(VM)
    rig.before(call, destroy)
    with pytest.raises(CdromError):
        rig.change_cd(VM, case.target)
    rig.plan.clear_hooks()
    rig.recover()
    assert rig.active() == set()
    assert rig.violations() == []


# --- Every single fault at every call of every flow -----------------------------------------


def named_points(case: Case) -> list[At]:
    """Every call of the flow's fault-free run, by name and occurrence within the step."""
    rig = case.rig()
    rig.change_cd(VM, case.target)
    return rig.call_points()


SINGLE_FAULTS = [(case, at.call, at.occurrence, effect) for case in CASES
                 for at in named_points(case) for effect in ("before", "after")
                 if at.call is not None]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
@pytest.mark.parametrize(("case", "call", "occurrence", "effect"), SINGLE_FAULTS,
                         ids=[f"{c.name}-{call}#{n}-{e}" for c, call, n, e in SINGLE_FAULTS])
def test_single_fault_keeps_the_promises(case: Case, call: str, occurrence: int,
                                         effect: Effect, encoding: Encoding) -> None:
    rig = case.rig(encoding)
    rig.fail(call, occurrence, effect)
    try:
        outcome = rig.change_cd(VM, case.target)
    except CdromError as err:
        assert err.code in (13, 41, 100, 1630)
        assert rig.tray(VM) == tray_with(case.held)  # atomic: an error leaves the old CD
    else:
        assert rig.tray(VM) == tray_with(case.after)  # a success leaves the new CD
        assert rig.calls().count(WRITE) <= 2
        assert sum(c in (LOAD, EJECT) for c in rig.calls()) == 1
        if outcome.clean:
            assert consistent(rig.state(VM), rig.tray(VM))
            assert rig.violations() == []
    assert injected(rig) == [call]
    # Nothing leaks unrecorded: every active volume is held or named by the metadata.
    state, tray = rig.state(VM), rig.tray(VM)
    assert all(v.in_tray(tray) or v in state.volumes for v in rig.active()), state
    assert rig.violations(settled=False) == []
    # Recovery (no fault) then converges: no marker, metadata names the tray, no leak, and
    # the metadata that is not ours is unchanged.
    report = rig.recover()
    assert report is not None and report.clean, report
    assert rig.violations() == []


# --- Recovery of what a flow left (service/recovery.py) -----------------------------------


def test_recovery_of_a_consistent_drive_changes_nothing() -> None:
    rig = rig_holding(A, Loaded(A), frozenset({A}))
    report = rig.recover()
    assert report is not None and report.clean
    (drive,) = report.drives
    assert (drive.state, drive.changed, drive.case) == (Loaded(A), False, None)
    assert effects(rig) == []
    check(rig, A, Loaded(A), {A})


@dataclass(frozen=True)
class Left:
    """What an interrupted flow left, and what recovery does with it."""

    row: str
    held: Held
    state: DriveState
    active: frozenset[VolumeRef]
    teardown: tuple[str, ...]
    final: DriveState


LEFT = [
    Left("insert.2", None, Inserting(B), frozenset({B}), (TEARDOWN,), EMPTY),
    Left("change.4", B, Changing(A, B), frozenset({A, B}), (TEARDOWN,), Loaded(B)),
    Left("change.5", B, Switched(B, A), frozenset({A, B}), (TEARDOWN,), Loaded(B)),
    Left("change.6", B, Switched(B, A), frozenset({B}), (), Loaded(B)),
    Left("eject.2", None, Ejecting(A), frozenset({A}), (TEARDOWN,), EMPTY),
]


@pytest.mark.parametrize("left", LEFT, ids=lambda left: left.row)
def test_recovery_tears_down_before_it_writes(left: Left) -> None:
    rig = rig_holding(left.held, left.state, left.active)
    report = rig.recover()
    assert report is not None and report.clean
    (drive,) = report.drives
    assert (drive.case, drive.state, drive.changed) == (left.row, left.final, True)
    assert effects(rig) == [*left.teardown, WRITE]
    check(rig, left.held, left.final, active_of(left.held))


@pytest.mark.parametrize("left", [left for left in LEFT if left.teardown],
                         ids=lambda left: left.row)
def test_recovery_whose_teardown_fails_leaves_the_metadata_for_the_next(left: Left) -> None:
    rig = rig_holding(left.held, left.state, left.active)
    rig.fail(TEARDOWN)
    report = rig.recover()
    assert report is not None and not report.clean
    (drive,) = report.drives
    assert (drive.state, drive.changed, drive.clean) == (left.state, False, False)
    assert effects(rig) == [TEARDOWN]
    # D11: the metadata still names the active volume, so the next recovery retries.
    check(rig, left.held, left.state, set(left.active), settled=False)
    recovered(rig, left.row, left.held, left.final)


def test_recovery_whose_write_fails_is_not_clean() -> None:
    rig = rig_holding(B, Switched(B, A), frozenset({B}))
    rig.fail(WRITE)
    report = rig.recover()
    assert report is not None and not report.clean
    (drive,) = report.drives
    assert (drive.state, drive.clean, drive.case) == (Switched(B, A), False, "change.6")
    check(rig, B, Switched(B, A), {B}, settled=False)
    recovered(rig, "change.6", B, Loaded(B))
