"""The flows in domain/flows.py, driven purely: results fed in, errors thrown at the yields.

A small world (a tray, the active volumes, the metadata) is kept here, independently of
the adapters, so that every single fault at every yield can be checked against the
promises: an error leaves the old CD, a success the new one, and whatever is active is
named by the metadata (and gone after recovery).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pytest
from ovirt_cdrom.domain import flows
from ovirt_cdrom.domain.errors import (
    CannotPrepareImage,
    CdromError,
    ChangeDiskFailed,
    GeneralException,
    HypervisorError,
    HypervisorTimeout,
    ImageFileNotFound,
    MetadataError,
    StorageError,
    VolumeInUse,
)
from ovirt_cdrom.domain.flows import (
    EjectMedia,
    FlowResult,
    IsActive,
    LoadMedia,
    Prepare,
    ReadTray,
    ResolvePath,
    Teardown,
    WriteSlot,
)
from ovirt_cdrom.domain.model import (
    CdromSlot,
    CdTarget,
    DiskType,
    Eject,
    LoadPath,
    LoadVolume,
    Media,
    VolumeRef,
    block_volume_path,
)

from .values import A, B

Effect = Literal["before", "after"]
ISO = "/rhev/data-center/mnt/isodomain/images/fedora.iso"


def media(volume: VolumeRef) -> Media:
    return Media(block_volume_path(volume), DiskType.BLOCK)


@dataclass
class World:
    """What the commands act on: one tray, the volumes' active flags, the metadata."""

    tray: str | None
    active: set[VolumeRef]
    metadata: CdromSlot
    files: set[str] = field(default_factory=lambda: {ISO})
    elsewhere: set[VolumeRef] = field(default_factory=set)  # held by another VM

    def apply(self, command: flows.Command) -> object:
        match command:
            case WriteSlot(slot):
                self.metadata = slot
            case Prepare(volume):
                self.active.add(volume)
                return media(volume)
            case ResolvePath(path):
                if path not in self.files:
                    raise ImageFileNotFound(path)
                return Media(path, DiskType.FILE)
            case LoadMedia(m):
                if m.disk_type is DiskType.BLOCK and not any(
                        v.is_at(m.path) for v in self.active):
                    raise HypervisorError(f"cannot open {m.path}")
                self.tray = m.path
            case EjectMedia():
                self.tray = None
            case ReadTray():
                return self.tray
            case Teardown(volume):
                if volume.is_at(self.tray) or volume in self.elsewhere:
                    raise VolumeInUse(str(volume))
                self.active.discard(volume)
            case IsActive(volume):
                return volume in self.active
        return None


def fault_for(command: flows.Command, effect: Effect) -> CdromError:
    """A plausible error for a failing command (a timeout when it took effect)."""
    if isinstance(command, WriteSlot):
        return MetadataError("write failed")
    if isinstance(command, LoadMedia | EjectMedia | ReadTray):
        return HypervisorTimeout("timed out") if effect == "after" else HypervisorError("no")
    return StorageError("lvchange failed")


Fault = Callable[[int, flows.Command], Effect | None]


@dataclass
class Outcome:
    commands: list[flows.Command]
    result: FlowResult | None = None
    error: CdromError | None = None


def drive(flow: flows.Flow, world: World, fault: Fault = lambda k, c: None) -> Outcome:
    """Run ``flow`` against ``world``; ``fault(k, command)`` says whether the k-th
    command fails, and whether before or after taking effect."""
    out = Outcome([])
    try:
        command = next(flow)
        while True:
            out.commands.append(command)
            effect = fault(len(out.commands) - 1, command)
            try:
                if effect == "before":
                    raise fault_for(command, effect)
                result = world.apply(command)
                if effect == "after":
                    raise fault_for(command, effect)
            except CdromError as err:
                command = flow.throw(err)
            else:
                command = flow.send(result)
    except StopIteration as stop:
        out.result = stop.value
    except CdromError as err:
        out.error = err
    return out


def at(*failing: int, effect: Effect = "before") -> Fault:
    return lambda k, c: effect if k in failing else None


def on(kind: type, nth: int = 0, effect: Effect = "before") -> Fault:
    """Fail the nth command of a given type."""
    seen = [0]

    def fault(k: int, command: flows.Command) -> Effect | None:
        if not isinstance(command, kind):
            return None
        seen[0] += 1
        return effect if seen[0] == nth + 1 else None
    return fault


@dataclass(frozen=True)
class Case:
    name: str
    slot: CdromSlot
    tray: str | None
    target: CdTarget
    new_tray: str | None

    def world(self) -> World:
        return World(self.tray, set(self.slot.volumes), self.slot)

    def flow(self) -> flows.Flow:
        return flows.change_cd(self.slot, self.tray, self.target)


CASES = [
    Case("insert", CdromSlot(), None, LoadVolume(B), block_volume_path(B)),
    Case("change", CdromSlot(current=A), block_volume_path(A), LoadVolume(B),
         block_volume_path(B)),
    Case("eject", CdromSlot(current=A), block_volume_path(A), Eject(), None),
    Case("path-over-volume", CdromSlot(current=A), block_volume_path(A), LoadPath(ISO), ISO),
    Case("path-into-empty", CdromSlot(), None, LoadPath(ISO), ISO),
    Case("eject-path", CdromSlot(), ISO, Eject(), None),
]
BY_NAME = {c.name: c for c in CASES}


def writes(commands: list[flows.Command]) -> list[CdromSlot]:
    return [c.slot for c in commands if isinstance(c, WriteSlot)]


def media_ops(commands: list[flows.Command]) -> int:
    return sum(isinstance(c, LoadMedia | EjectMedia) for c in commands)


# --- Exact command sequences ---------------------------------------------------------------


def test_insert_happy_path() -> None:
    case = BY_NAME["insert"]
    world = case.world()
    out = drive(case.flow(), world)
    assert out.commands == [WriteSlot(CdromSlot(loading=B)), Prepare(B), LoadMedia(media(B)),
                            WriteSlot(CdromSlot(current=B))]
    assert out.result == FlowResult(CdromSlot(current=B))
    assert world.tray == block_volume_path(B) and world.active == {B}


def test_change_happy_path_tears_down_old_before_final_write() -> None:
    case = BY_NAME["change"]
    world = case.world()
    out = drive(case.flow(), world)
    assert out.commands == [WriteSlot(CdromSlot(current=A, loading=B)), Prepare(B),
                            LoadMedia(media(B)), Teardown(A), WriteSlot(CdromSlot(current=B))]
    assert out.result == FlowResult(CdromSlot(current=B))
    assert world.active == {B} and world.metadata == CdromSlot(current=B)


def test_eject_happy_path() -> None:
    case = BY_NAME["eject"]
    world = case.world()
    out = drive(case.flow(), world)
    assert out.commands == [WriteSlot(CdromSlot(current=A, ejecting=True)), EjectMedia(),
                            Teardown(A), WriteSlot(CdromSlot())]
    assert out.result == FlowResult(CdromSlot())
    assert world.tray is None and world.active == set()


def test_path_over_volume_marks_and_tears_down_the_volume() -> None:
    case = BY_NAME["path-over-volume"]
    out = drive(case.flow(), case.world())
    assert out.commands == [ResolvePath(ISO), WriteSlot(CdromSlot(current=A, ejecting=True)),
                            LoadMedia(Media(ISO, DiskType.FILE)), Teardown(A),
                            WriteSlot(CdromSlot())]


def test_path_into_empty_tray_writes_no_metadata() -> None:
    case = BY_NAME["path-into-empty"]
    out = drive(case.flow(), case.world())
    assert out.commands == [ResolvePath(ISO), LoadMedia(Media(ISO, DiskType.FILE))]
    assert out.result == FlowResult(CdromSlot())


def test_missing_legacy_file_changes_nothing() -> None:
    case = BY_NAME["path-over-volume"]
    world = case.world()
    world.files = set()
    out = drive(case.flow(), world)
    assert out.commands == [ResolvePath(ISO)]
    assert isinstance(out.error, ImageFileNotFound)
    assert world.metadata == case.slot and world.tray == case.tray


@pytest.mark.parametrize(("slot", "tray", "target"), [
    (CdromSlot(current=A), block_volume_path(A), LoadVolume(A)),
    (CdromSlot(), None, Eject()),
    (CdromSlot(), ISO, LoadPath(ISO)),
], ids=["same-volume", "eject-empty", "same-path"])
def test_noop_yields_nothing(slot: CdromSlot, tray: str | None, target: CdTarget) -> None:
    out = drive(flows.change_cd(slot, tray, target), World(tray, set(slot.volumes), slot))
    assert out.commands == []
    assert out.result == FlowResult(slot, changed=False)


def test_prepare_fails_tears_down_new_and_restores_entries() -> None:
    case = BY_NAME["change"]
    world = case.world()
    out = drive(case.flow(), world, on(Prepare, effect="after"))
    assert out.commands == [WriteSlot(CdromSlot(current=A, loading=B)), Prepare(B),
                            Teardown(B), WriteSlot(CdromSlot(current=A))]
    assert isinstance(out.error, CannotPrepareImage) and out.error.code == 1630
    assert world.active == {A} and world.metadata == CdromSlot(current=A)


def test_prepare_and_its_teardown_fail_keeps_the_loading_marker() -> None:
    case = BY_NAME["insert"]
    world = case.world()

    def fault(k: int, c: flows.Command) -> Effect | None:
        return "after" if isinstance(c, Prepare) else "before" if isinstance(c, Teardown) else None
    out = drive(case.flow(), world, fault)
    assert out.commands == [WriteSlot(CdromSlot(loading=B)), Prepare(B), Teardown(B)]
    assert isinstance(out.error, CannotPrepareImage)
    assert world.metadata == CdromSlot(loading=B) and world.active == {B}


def test_first_write_fails_restores_and_prepares_nothing() -> None:
    case = BY_NAME["change"]
    world = case.world()
    out = drive(case.flow(), world, at(0, effect="after"))
    assert out.commands == [WriteSlot(CdromSlot(current=A, loading=B)),
                            WriteSlot(CdromSlot(current=A))]
    assert type(out.error) is GeneralException
    assert world.metadata == CdromSlot(current=A)


def test_load_fails_and_read_back_shows_new_is_success() -> None:
    case = BY_NAME["change"]
    world = case.world()
    out = drive(case.flow(), world, on(LoadMedia, effect="after"))
    assert out.commands == [WriteSlot(CdromSlot(current=A, loading=B)), Prepare(B),
                            LoadMedia(media(B)), ReadTray(), Teardown(A),
                            WriteSlot(CdromSlot(current=B))]
    assert out.result == FlowResult(CdromSlot(current=B))
    assert world.tray == block_volume_path(B) and world.active == {B}


def test_load_fails_and_read_back_shows_old_compensates() -> None:
    case = BY_NAME["change"]
    world = case.world()
    out = drive(case.flow(), world, on(LoadMedia))
    assert out.commands == [WriteSlot(CdromSlot(current=A, loading=B)), Prepare(B),
                            LoadMedia(media(B)), ReadTray(), Teardown(B),
                            WriteSlot(CdromSlot(current=A))]
    assert isinstance(out.error, ChangeDiskFailed) and out.error.code == 41
    assert world.tray == block_volume_path(A) and world.active == {A}


def test_read_back_fails_twice_keeps_markers() -> None:
    case = BY_NAME["change"]
    world = case.world()

    def fault(k: int, c: flows.Command) -> Effect | None:
        return "after" if isinstance(c, LoadMedia | ReadTray) else None
    out = drive(case.flow(), world, fault)
    assert out.commands == [WriteSlot(CdromSlot(current=A, loading=B)), Prepare(B),
                            LoadMedia(media(B)), ReadTray(), ReadTray()]
    assert isinstance(out.error, ChangeDiskFailed)
    assert "unknown" in out.error.message
    assert world.metadata == CdromSlot(current=A, loading=B)
    assert world.active == {A, B}


def test_read_back_fails_once_then_answers() -> None:
    case = BY_NAME["eject"]
    out = drive(case.flow(), case.world(),
                lambda k, c: "after" if isinstance(c, EjectMedia) or k == 2 else None)
    assert out.commands == [WriteSlot(CdromSlot(current=A, ejecting=True)), EjectMedia(),
                            ReadTray(), ReadTray(), Teardown(A), WriteSlot(CdromSlot())]
    assert out.result == FlowResult(CdromSlot())


def test_eject_fails_and_tray_still_holds_restores_entry() -> None:
    case = BY_NAME["eject"]
    world = case.world()
    out = drive(case.flow(), world, on(EjectMedia))
    assert out.commands == [WriteSlot(CdromSlot(current=A, ejecting=True)), EjectMedia(),
                            ReadTray(), WriteSlot(CdromSlot(current=A))]
    assert isinstance(out.error, ChangeDiskFailed)
    assert world.metadata == CdromSlot(current=A)


def test_teardown_old_fails_is_success_with_markers_kept() -> None:
    case = BY_NAME["change"]
    world = case.world()
    out = drive(case.flow(), world, on(Teardown))
    assert out.commands == [WriteSlot(CdromSlot(current=A, loading=B)), Prepare(B),
                            LoadMedia(media(B)), Teardown(A)]
    assert out.result == FlowResult(CdromSlot(current=A, loading=B), clean=False)
    assert world.metadata == CdromSlot(current=A, loading=B)
    assert world.tray == block_volume_path(B)


def test_teardown_old_in_use_elsewhere_is_clean_success() -> None:
    case = BY_NAME["eject"]
    world = case.world()
    world.elsewhere.add(A)
    out = drive(case.flow(), world)
    assert out.commands[-2:] == [Teardown(A), WriteSlot(CdromSlot())]
    assert out.result == FlowResult(CdromSlot())
    assert world.active == {A}  # another VM holds it: left active, not ours to record


def test_final_write_fails_is_success_not_clean() -> None:
    case = BY_NAME["insert"]
    world = case.world()
    out = drive(case.flow(), world, on(WriteSlot, nth=1))
    assert out.result == FlowResult(CdromSlot(current=B), clean=False)
    assert world.metadata == CdromSlot(loading=B)  # the marker names the active volume


# --- Every single fault at every yield -------------------------------------------------


def longest_trace(case: Case) -> int:
    longest = len(drive(case.flow(), case.world()).commands)
    for k in range(12):
        for effect in ("before", "after"):
            longest = max(longest, len(drive(case.flow(), case.world(),
                                             at(k, effect=effect)).commands))
    return longest


SINGLE_FAULTS = [(case, k, effect) for case in CASES
                 for k in range(longest_trace(case)) for effect in ("before", "after")]


@pytest.mark.parametrize(("case", "k", "effect"), SINGLE_FAULTS,
                         ids=[f"{c.name}-{k}-{e}" for c, k, e in SINGLE_FAULTS])
def test_single_fault_keeps_the_promises(case: Case, k: int, effect: Effect) -> None:
    world = case.world()
    out = drive(case.flow(), world, at(k, effect=effect))
    involved = set(case.slot.volumes) | (
        {case.target.volume} if isinstance(case.target, LoadVolume) else set())

    if out.error is not None:
        # Atomic: an error leaves the old CD.
        assert world.tray == case.tray
        assert isinstance(out.error, CdromError)
        assert out.error.code in (41, 100, 1630, 13)
    else:
        assert out.result is not None
        assert world.tray == case.new_tray
        assert len(writes(out.commands)) <= 2
        assert media_ops(out.commands) == 1
        if out.result.clean:
            assert world.metadata.settled
            assert flows.consistent(world.metadata, world.tray)
    # Nothing leaks unrecorded: every active volume is held or named by the metadata.
    for volume in world.active & involved:
        assert volume.is_at(world.tray) or volume in world.metadata.volumes, volume

    # Recovery (no fault) then converges: no marker, metadata names the tray, no leak.
    drive(flows.recover_drive(world.metadata, world.tray), world)
    assert world.metadata.settled
    assert flows.consistent(world.metadata, world.tray)
    if world.metadata.current is None:  # an empty entry must not hide a volume in the tray
        assert not any(v.is_at(world.tray) for v in involved)
    assert all(v.is_at(world.tray) for v in world.active)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_success_paths_write_at_most_twice_and_switch_once(case: Case) -> None:
    out = drive(case.flow(), case.world())
    assert out.result is not None and out.result.clean
    assert len(writes(out.commands)) <= 2
    assert media_ops(out.commands) == 1


# --- recover_drive ------------------------------------------------------------------------


def test_recover_consistent_drive_yields_nothing() -> None:
    out = drive(flows.recover_drive(CdromSlot(current=A), block_volume_path(A)),
                World(block_volume_path(A), {A}, CdromSlot(current=A)))
    assert out.commands == []
    assert out.result == FlowResult(CdromSlot(current=A), changed=False)


def test_recover_insert_2_tears_down_and_drops_the_entry() -> None:
    world = World(None, {B}, CdromSlot(loading=B))
    out = drive(flows.recover_drive(world.metadata, None), world)
    assert out.commands == [IsActive(B), Teardown(B), WriteSlot(CdromSlot())]
    assert out.result == FlowResult(CdromSlot())
    assert world.active == set()


def test_recover_change_4_tears_down_old_and_keeps_new() -> None:
    slot = CdromSlot(current=A, loading=B)
    world = World(block_volume_path(B), {A, B}, slot)
    out = drive(flows.recover_drive(slot, world.tray), world)
    assert out.commands == [IsActive(A), IsActive(B), Teardown(A),
                            WriteSlot(CdromSlot(current=B))]
    assert world.active == {B} and world.metadata == CdromSlot(current=B)


def test_recover_teardown_failure_leaves_metadata_unchanged() -> None:
    slot = CdromSlot(current=A, ejecting=True)
    world = World(None, {A}, slot)
    out = drive(flows.recover_drive(slot, None), world, on(Teardown))
    assert out.commands == [IsActive(A), Teardown(A)]
    assert out.result == FlowResult(slot, changed=False, clean=False)
    assert world.metadata == slot


def test_recover_write_failure_is_not_clean() -> None:
    slot = CdromSlot(current=B, stale=A)
    world = World(block_volume_path(B), {B}, slot)
    out = drive(flows.recover_drive(slot, world.tray), world, on(WriteSlot))
    assert out.result == FlowResult(slot, clean=False)
