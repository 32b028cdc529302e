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
    NoSuchDrive,
    NoSuchVM,
    VolumeInUse,
    internal_error,
)
from ovirt_cdrom.domain.model import (
    CdromSlot,
    CdTarget,
    DriveEntries,
    DriveKey,
    DriveName,
    Media,
    Unreadable,
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
    slot: CdromSlot | Unreadable | None
    changed: bool
    clean: bool
    error: CdromError | None = None
    case: str | None = None    # the recovery row acted on (None: nothing to recover)
    design: str | None = None  # that row's actions, in the design's words


@dataclass(slots=True)
class RecoveryReport:
    drives: list[DriveRecovery] = field(default_factory=list)
    vm_errors: dict[VmId, CdromError] = field(default_factory=dict)
    # VMs that went away (shut down, destroyed) before recovery could look at them: they
    # hold nothing any more, so nothing is left to recover. Not an error.
    gone: list[VmId] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.vm_errors and all(d.clean and d.error is None for d in self.drives)


class CdromService:
    """``change_cd``, ``recover`` and ``recover_all`` over the three ports."""

    def __init__(self, hypervisor: Hypervisor, volumes: VolumeActivator,
                 metadata: MetadataRepository) -> None:
        self._hv = hypervisor
        self._volumes = volumes
        self._md = metadata
        # Guards the bookkeeping below (never held across a port call).
        self._lock = threading.Lock()
        self._drive_locks: dict[DriveKey, threading.Lock] = {}
        self._volume_locks: dict[VolumeRef, threading.Lock] = {}
        # One writer of a VM's metadata block at a time: a write replaces the whole block,
        # so two interleaved writes (two drives of one VM) would lose one's entries.
        self._metadata_locks: dict[VmId, threading.Lock] = {}
        self._users = VolumeUsers()
        # What runs on each drive: `_busy` holds the drives with an operation running;
        # `_last_op[key]` is the value of the `_ops` counter when one last began or ended
        # there. An observation of a drive made without its lock, after the counter read
        # `seen`, still holds if the drive is idle and `_last_op[key] <= seen`.
        self._ops = 0
        self._last_op: dict[DriveKey, int] = {}
        self._busy: set[DriveKey] = set()

    # --- public API ------------------------------------------------------------------

    def change_cd(self, vm: VmId, drive: DriveName, target: CdTarget) -> ChangeResult:
        """Insert, eject or change the CD in ``drive``; atomic, see ``flows.change_cd``.

        Calls on the same drive are serialized: a second call waits for the first, then
        starts from what the first left (so a retried request becomes a no-op).
        """
        key = DriveKey(vm, drive)
        with self._drive_lock(key):
            self._begin(key)
            try:
                return self._change_cd(key, target)
            finally:
                self._end(key)

    def _change_cd(self, key: DriveKey, target: CdTarget) -> ChangeResult:
        vm, drive = key.vm, key.drive
        if self._hv.is_migrating(vm):
            raise MigrationInProgress(f"VM {vm} is migrating")
        held = self._hv.cdrom(vm, drive)
        slot = CdromSlot.read(self._md.read(vm, drive))
        self._note_holder(key, slot, held)
        recovered = False
        if not flows.consistent(slot, held):
            log.info("Drive %s has leftovers (%s); recovering before the change", key, slot)
            done = self._run(key, flows.recover_drive(slot, held))
            if not done.clean or not isinstance(done.slot, CdromSlot):
                raise DriveBusy(f"recovery left {done.slot}", vm=vm, drive=drive)
            slot, recovered = done.slot, True
        assert isinstance(slot, CdromSlot)  # consistent: settled
        result = self._run(key, flows.change_cd(slot, held, target))
        if not result.clean:
            log.warning("Change on %s succeeded; leftovers kept for recovery: %s",
                        key, result.slot)
        assert isinstance(result.slot, CdromSlot)
        return ChangeResult(result.slot, result.changed, result.clean, recovered)

    def recover(self, *vms: VmId) -> RecoveryReport:
        """Clean up every CD-ROM drive of these VMs (e.g. when vdsm recovers a VM)."""
        return self._recover_vms(list(vms))

    def recover_all(self) -> RecoveryReport:
        """Recover every VM on the host, as at host start.

        A first pass records which volumes every VM holds, so that no VM's recovery tears
        down a volume another VM holds; a second pass cleans up the drives that need it.
        Volume users recorded for VMs the host no longer runs are dropped.
        """
        with self._lock:
            seen = self._ops
        vms = self._hv.vm_ids()
        self._forget_vms_but(set(vms), seen)
        return self._recover_vms(vms)

    def _forget_vms_but(self, running: set[VmId], seen: int) -> None:
        """Drop the volume users of drives of VMs not ``running`` that nothing touched
        since the counter read ``seen`` (a VM started meanwhile keeps its records)."""
        with self._lock:
            for key in self._users.holders():
                if key.vm not in running and key not in self._busy \
                        and self._last_op.get(key, 0) <= seen:
                    self._users.forget_drive(key)

    def _recover_vms(self, vms: list[VmId]) -> RecoveryReport:
        report = RecoveryReport()
        observed: list[tuple[VmId, Mapping[DriveName, str | None],
                             Mapping[DriveName, DriveEntries], int]] = []
        for vm in vms:
            with self._lock:
                seen = self._ops
            try:
                trays = self._hv.cdroms(vm)
                entries = self._md.read_all(vm, list(trays))
            except NoSuchVM:
                log.info("VM %s went away before its CD-ROMs were recovered", vm)
                report.gone.append(vm)
                continue
            except CdromError as err:
                log.error("Cannot recover CD-ROMs of VM %s: %s", vm, err)
                report.vm_errors[vm] = err
                continue
            observed.append((vm, trays, entries, seen))
            with self._lock:
                for drive, held in trays.items():
                    key = DriveKey(vm, drive)
                    if key in self._busy or self._last_op.get(key, 0) > seen:
                        continue  # changed since we looked: its own operation keeps count
                    self._claim_held(key, CdromSlot.read(entries.get(drive, ())), held)
        for vm, trays, entries, seen in observed:
            for drive, held in trays.items():
                try:
                    report.drives.append(
                        self._recover_drive(vm, drive, held, entries.get(drive, ()), seen))
                except NoSuchVM:
                    log.info("VM %s went away while its CD-ROMs were recovered", vm)
                    report.drives = [d for d in report.drives if d.vm != vm]
                    report.gone.append(vm)
                    break
        return report

    def volume_users(self) -> dict[VolumeRef, frozenset[DriveKey]]:
        """A snapshot of the host-wide volume users (for diagnostics and tests)."""
        with self._lock:
            return self._users.snapshot()

    # --- internals -------------------------------------------------------------------

    def _recover_drive(self, vm: VmId, drive: DriveName, held: str | None,
                       entries: DriveEntries, seen: int) -> DriveRecovery:
        """Recover one drive; raises NoSuchVM when the VM went away meanwhile."""
        key = DriveKey(vm, drive)
        try:
            with self._drive_lock(key):
                with self._lock:
                    stale = self._last_op.get(key, 0) > seen
                self._begin(key)
                try:
                    if stale:
                        # An operation ran on the drive since we looked: look again.
                        held = self._hv.cdrom(vm, drive)
                        entries = self._md.read(vm, drive)
                    slot = CdromSlot.read(entries)
                    self._note_holder(key, slot, held)
                    if flows.consistent(slot, held):
                        return DriveRecovery(vm, drive, slot, changed=False, clean=True)
                    result = self._run(key, flows.recover_drive(slot, held))
                finally:
                    self._end(key)
        except NoSuchVM:
            raise
        except NoSuchDrive:
            log.info("Drive %s went away while it was recovered", key)
            return DriveRecovery(vm, drive, None, changed=False, clean=True)
        except CdromError as err:
            log.error("Cannot recover drive %s: %s", key, err)
            return DriveRecovery(vm, drive, None, changed=False, clean=False, error=err)
        if not result.clean:
            log.warning("Recovery of %s left %s; a later recovery will retry", key, result.slot)
        decision = result.decision
        return DriveRecovery(vm, drive, result.slot, result.changed, result.clean,
                             case=decision.case if decision else None,
                             design=decision.design if decision else None)

    def _begin(self, key: DriveKey) -> None:
        with self._lock:
            self._ops += 1
            self._last_op[key] = self._ops
            self._busy.add(key)

    def _end(self, key: DriveKey) -> None:
        with self._lock:
            self._ops += 1
            self._last_op[key] = self._ops
            self._busy.discard(key)

    def _note_holder(self, key: DriveKey, slot: CdromSlot | Unreadable,
                     held: str | None) -> None:
        """Record, from scratch, which volume this drive holds."""
        with self._lock:
            self._users.forget_drive(key)
            self._claim_held(key, slot, held)

    def _claim_held(self, key: DriveKey, slot: CdromSlot | Unreadable,
                    held: str | None) -> None:
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
        with self._lock_of(self._metadata_locks, key.vm):
            self._md.write(key.vm, key.drive, command.slot.entries())

    def _read_tray(self, key: DriveKey, command: flows.ReadTray) -> str | None:
        return self._hv.cdrom(key.vm, key.drive)

    def _load_media(self, key: DriveKey, command: flows.LoadMedia) -> None:
        self._hv.load(key.vm, key.drive, command.media)

    def _eject_media(self, key: DriveKey, command: flows.EjectMedia) -> None:
        self._hv.eject(key.vm, key.drive)

    def _prepare(self, key: DriveKey, command: flows.Prepare) -> Media:
        volume = command.volume
        with self._lock_of(self._volume_locks, volume):
            with self._lock:
                self._users.claim(volume, key)
            return self._volumes.prepare(volume)

    def _teardown(self, key: DriveKey, command: flows.Teardown) -> None:
        volume = command.volume
        with self._lock_of(self._volume_locks, volume):
            with self._lock:
                self._users.release(volume, key)
                others = self._users.users(volume)
            others = self._still_using(volume, others)
            if others:
                raise VolumeInUse(
                    f"{volume} is used by {', '.join(sorted(map(str, others)))}")
            self._volumes.teardown(volume)

    def _still_using(self, volume: VolumeRef,
                     users: frozenset[DriveKey]) -> frozenset[DriveKey]:
        """The recorded users of ``volume`` that still use it.

        A drive with an operation running keeps its claims (it may be loading the volume).
        An idle one is looked at: a VM shut down or destroyed, or a tray that no longer
        holds the volume, is no user any more, and its record goes. Called with the
        volume's lock held, so no prepare of the volume runs meanwhile.
        """
        still = set()
        for user in sorted(users, key=str):
            with self._lock:
                busy = user in self._busy
            if busy:
                still.add(user)
                continue
            try:
                holds = volume.is_at(self._hv.cdrom(user.vm, user.drive))
            except (NoSuchVM, NoSuchDrive):
                holds = False
            except CdromError as err:
                log.warning("Cannot tell whether %s still holds %s (%s): keeping it",
                            user, volume, err)
                holds = True
            if holds:
                still.add(user)
                continue
            log.info("%s no longer holds %s: dropping its record", user, volume)
            with self._lock:
                if user not in self._busy:
                    self._users.release(volume, user)
                else:
                    still.add(user)
        return frozenset(still)

    def _is_active(self, key: DriveKey, command: flows.IsActive) -> bool:
        return self._volumes.is_active(command.volume)

    def _resolve_path(self, key: DriveKey, command: flows.ResolvePath) -> Media:
        return self._volumes.resolve_path(command.path)

    def _drive_lock(self, key: DriveKey) -> threading.Lock:
        """The drive's lock (to hold with ``with``), created on first use."""
        return self._lock_of(self._drive_locks, key)

    def _lock_of(self, locks: dict[Any, threading.Lock], name: object) -> threading.Lock:
        """The lock of ``name`` in ``locks`` (to hold with ``with``), created on first use."""
        lock = locks.get(name)
        if lock is None:
            with self._lock:
                lock = locks.setdefault(name, threading.Lock())
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
