"""The application service: runs the domain's flows through the ports.

It owns what lives only in this process: one lock per drive (a second call on the same
drive waits for the first), one lock per volume around activation, and the host-wide
volume users (reference counting). It knows nothing of libvirt, LVM or XML.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ovirt_cdrom.domain import flows
from ovirt_cdrom.domain.errors import (
    CdromError,
    DriveBusy,
    MigrationInProgress,
    VolumeInUse,
    internal_error,
)
from ovirt_cdrom.domain.model import (
    CdEntry,
    CdromSlot,
    CdTarget,
    DriveKey,
    DriveName,
    Media,
    VmId,
    VolumeRef,
    VolumeUsers,
)
from ovirt_cdrom.ports import Hypervisor, MetadataRepository, VolumeActivator

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChangeResult:
    slot: CdromSlot
    changed: bool
    clean: bool
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class DriveRecovery:
    vm: VmId
    drive: DriveName
    slot: CdromSlot | None
    changed: bool
    clean: bool
    error: CdromError | None = None
    case: str | None = None    # the recovery row acted on (None: nothing to recover)
    design: str | None = None  # that row's actions, in the design's words


@dataclass(slots=True)
class RecoveryReport:
    drives: list[DriveRecovery] = field(default_factory=list)
    vm_errors: dict[VmId, CdromError] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.vm_errors and all(d.clean and d.error is None for d in self.drives)

    def extend(self, other: RecoveryReport) -> None:
        self.drives.extend(other.drives)
        self.vm_errors.update(other.vm_errors)


class CdromService:
    """``change_cd``, ``recover`` and ``recover_all`` over the three ports."""

    def __init__(self, hypervisor: Hypervisor, volumes: VolumeActivator,
                 metadata: MetadataRepository) -> None:
        self._hv = hypervisor
        self._volumes = volumes
        self._md = metadata
        self._guard = threading.Lock()
        self._drive_locks: dict[DriveKey, threading.Lock] = {}
        self._volume_locks: dict[VolumeRef, threading.Lock] = {}
        self._users = VolumeUsers()
        self._users_lock = threading.Lock()
        # Recovery observes drives without their locks, then looks again only at drives on
        # which an operation finished after it looked: `_done_at[key]` is the value of the
        # `_finished` counter when the last operation on that drive finished.
        self._finished = 0
        self._done_at: dict[DriveKey, int] = {}

    # --- public API ------------------------------------------------------------------

    def change_cd(self, vm: VmId, drive: DriveName, target: CdTarget) -> ChangeResult:
        """Insert, eject or change the CD in ``drive``; atomic, see ``flows.change_cd``.

        Calls on the same drive are serialized: a second call waits for the first, then
        starts from what the first left (so a retried request becomes a no-op).
        """
        key = DriveKey(vm, drive)
        with self._drive_lock(key):
            try:
                return self._change_cd(key, target)
            finally:
                self._mark_done(key)

    def _change_cd(self, key: DriveKey, target: CdTarget) -> ChangeResult:
        vm, drive = key.vm, key.drive
        if self._hv.is_migrating(vm):
            raise MigrationInProgress(f"VM {vm} is migrating")
        held = self._hv.cdrom(vm, drive)
        slot = CdromSlot.from_entries(self._md.read(vm, drive))
        self._note_holder(key, slot, held)
        recovered = False
        if not flows.consistent(slot, held):
            log.info("Drive %s has leftovers (%s); recovering before the change", key, slot)
            done = self._run(key, flows.recover_drive(slot, held))
            if not done.clean:
                raise DriveBusy(f"recovery left {done.slot}", vm=vm, drive=drive)
            slot, recovered = done.slot, True
        result = self._run(key, flows.change_cd(slot, held, target))
        if not result.clean:
            log.warning("Change on %s succeeded; leftovers kept for recovery: %s",
                        key, result.slot)
        return ChangeResult(result.slot, result.changed, result.clean, recovered)


    def recover(self, vm: VmId) -> RecoveryReport:
        """Clean up every CD-ROM drive of one VM (e.g. when vdsm recovers the VM)."""
        return self._recover_vms([vm])

    def recover_all(self) -> RecoveryReport:
        """Recover every VM on the host, as at host start.

        A first pass records which volumes every VM holds, so that no VM's recovery tears
        down a volume another VM holds; a second pass cleans up the drives that need it.
        """
        return self._recover_vms(self._hv.vm_ids())

    def _recover_vms(self, vms: list[VmId]) -> RecoveryReport:
        report = RecoveryReport()
        observed: list[tuple[VmId, Mapping[DriveName, str | None],
                             Mapping[DriveName, tuple[CdEntry, ...]], int]] = []
        for vm in vms:
            seen = self._finished
            try:
                trays = self._hv.cdroms(vm)
                entries = self._md.read_all(vm, list(trays))
            except CdromError as err:
                log.error("Cannot recover CD-ROMs of VM %s: %s", vm, err)
                report.vm_errors[vm] = err
                continue
            observed.append((vm, trays, entries, seen))
            for drive, held in trays.items():
                try:
                    slot = CdromSlot.from_entries(entries.get(drive, ()))
                except CdromError:
                    continue  # reported by the second pass
                # Additive: the second pass makes each drive's claims exact, under its lock.
                with self._users_lock:
                    for volume in slot.volumes:
                        if volume.is_at(held):
                            self._users.claim(volume, DriveKey(vm, drive))
        for vm, trays, entries, seen in observed:
            for drive, held in trays.items():
                report.drives.append(
                    self._recover_drive(vm, drive, held, entries.get(drive, ()), seen))
        return report

    def volume_users(self) -> dict[VolumeRef, frozenset[DriveKey]]:
        """A snapshot of the host-wide volume users (for diagnostics and tests)."""
        with self._users_lock:
            return self._users.snapshot()

    # --- internals -------------------------------------------------------------------

    def _recover_drive(self, vm: VmId, drive: DriveName, held: str | None,
                       entries: tuple[CdEntry, ...], seen: int) -> DriveRecovery:
        key = DriveKey(vm, drive)
        try:
            with self._drive_lock(key):
                if self._done_at.get(key, 0) > seen:
                    # An operation ran on the drive since we looked: look again.
                    held = self._hv.cdrom(vm, drive)
                    entries = self._md.read(vm, drive)
                slot = CdromSlot.from_entries(entries)
                self._note_holder(key, slot, held)
                if flows.consistent(slot, held):
                    return DriveRecovery(vm, drive, slot, changed=False, clean=True)
                try:
                    result = self._run(key, flows.recover_drive(slot, held))
                finally:
                    self._mark_done(key)
        except CdromError as err:
            log.error("Cannot recover drive %s: %s", key, err)
            return DriveRecovery(vm, drive, None, changed=False, clean=False, error=err)
        if not result.clean:
            log.warning("Recovery of %s left %s; a later recovery will retry", key, result.slot)
        decision = result.decision
        return DriveRecovery(vm, drive, result.slot, result.changed, result.clean,
                             case=decision.case if decision else None,
                             design=decision.design if decision else None)

    def _mark_done(self, key: DriveKey) -> None:
        with self._guard:
            self._finished += 1
            self._done_at[key] = self._finished

    def _note_holder(self, key: DriveKey, slot: CdromSlot, held: str | None) -> None:
        """Record, from scratch, which volume this drive holds."""
        with self._users_lock:
            self._users.forget_drive(key)
            for volume in slot.volumes:
                if volume.is_at(held):
                    self._users.claim(volume, key)

    def _run(self, key: DriveKey, flow: flows.Flow) -> flows.FlowResult:
        """Drive a flow: execute each command it yields, feed back results and errors."""
        try:
            command = next(flow)
            while True:
                try:
                    result = self._execute(key, command)
                except CdromError as err:
                    command = flow.throw(err)
                except Exception as exc:  # an adapter bug must not skip compensation
                    log.exception("Untyped error from %s", type(command).__name__)
                    command = flow.throw(internal_error(exc))
                else:
                    command = flow.send(result)
        except StopIteration as stop:
            value: flows.FlowResult = stop.value
            return value

    def _execute(self, key: DriveKey, command: flows.Command) -> object:
        # One dict lookup by the command's class (the flows yield exactly these classes).
        run = _COMMANDS.get(type(command))
        if run is None:
            raise AssertionError(f"unknown command {command!r}")
        return run(self, key, command)

    def _write_slot(self, key: DriveKey, command: flows.WriteSlot) -> None:
        self._md.write(key.vm, key.drive, command.slot.entries())

    def _read_tray(self, key: DriveKey, command: flows.ReadTray) -> str | None:
        return self._hv.cdrom(key.vm, key.drive)

    def _load_media(self, key: DriveKey, command: flows.LoadMedia) -> None:
        self._hv.load(key.vm, key.drive, command.media)

    def _eject_media(self, key: DriveKey, command: flows.EjectMedia) -> None:
        self._hv.eject(key.vm, key.drive)

    def _prepare(self, key: DriveKey, command: flows.Prepare) -> Media:
        volume = command.volume
        with self._volume_lock(volume):
            with self._users_lock:
                self._users.claim(volume, key)
            return self._volumes.prepare(volume)

    def _teardown(self, key: DriveKey, command: flows.Teardown) -> None:
        volume = command.volume
        with self._volume_lock(volume):
            with self._users_lock:
                last = self._users.release(volume, key)
                others = self._users.users(volume)
            if not last:
                raise VolumeInUse(
                    f"{volume} is used by {', '.join(sorted(map(str, others)))}")
            self._volumes.teardown(volume)

    def _is_active(self, key: DriveKey, command: flows.IsActive) -> bool:
        return self._volumes.is_active(command.volume)

    def _resolve_path(self, key: DriveKey, command: flows.ResolvePath) -> Media:
        return self._volumes.resolve_path(command.path)

    def _drive_lock(self, key: DriveKey) -> threading.Lock:
        """The drive's lock (to hold with ``with``), created on first use."""
        lock = self._drive_locks.get(key)
        if lock is None:
            with self._guard:
                lock = self._drive_locks.setdefault(key, threading.Lock())
        return lock

    def _volume_lock(self, volume: VolumeRef) -> threading.Lock:
        """The volume's lock (to hold with ``with``), created on first use."""
        lock = self._volume_locks.get(volume)
        if lock is None:
            with self._guard:
                lock = self._volume_locks.setdefault(volume, threading.Lock())
        return lock


_COMMANDS: dict[type, Callable[[CdromService, DriveKey, Any], object]] = {
    flows.WriteSlot: CdromService._write_slot,
    flows.ReadTray: CdromService._read_tray,
    flows.LoadMedia: CdromService._load_media,
    flows.EjectMedia: CdromService._eject_media,
    flows.Prepare: CdromService._prepare,
    flows.Teardown: CdromService._teardown,
    flows.IsActive: CdromService._is_active,
    flows.ResolvePath: CdromService._resolve_path,
}
