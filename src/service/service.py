"""The application service: ``change_cd``, ``recover`` and ``recover_all``.

A change takes the drive's lock, reads what the tray holds and what the metadata says,
recovers the drive first if they disagree (leftovers of an interrupted operation), then
runs the flow the request asks for (``flows.py``).
"""

from __future__ import annotations

import dataclasses
import logging

from ovirt_cdrom.domain.errors import DriveBusy, MigrationInProgress
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    CdTarget,
    DriveKey,
    DriveName,
    Eject,
    FileTray,
    LoadPath,
    LoadVolume,
    Tray,
    VmId,
    VolumeRef,
)
from ovirt_cdrom.domain.state import DriveState, Empty, Loaded, consistent
from ovirt_cdrom.ports import Hypervisor, MetadataRepository, VolumeActivator
from ovirt_cdrom.service import flows
from ovirt_cdrom.service.flows import Outcome
from ovirt_cdrom.service.host import Host
from ovirt_cdrom.service.recovery import RecoveryReport, recover_drive, recover_vms

log = logging.getLogger(__name__)


class CdromService:
    """The product's operations over the three ports. Thread-safe."""

    def __init__(self, hypervisor: Hypervisor, volumes: VolumeActivator,
                 metadata: MetadataRepository) -> None:
        self.host = Host(hypervisor, volumes, metadata)

    def change_cd(self, vm: VmId, drive: DriveName, target: CdTarget) -> Outcome:
        """Insert, eject or change the CD in ``drive``: atomic (see ``flows``).

        Calls on the same drive are serialized: a second call waits for the first, then
        starts from what the first left (so a retried request becomes a no-op, D12).
        """
        host, key = self.host, DriveKey(vm, drive)
        with host.operation(key):
            if host.hypervisor.is_migrating(vm):
                raise MigrationInProgress(f"VM {vm} is migrating")
            tray = host.hypervisor.cdrom(vm, drive)
            state = host.metadata.read(vm, drive)
            host.note_holder(key, state, tray)
            recovered = not consistent(state, tray)
            if recovered:
                log.info("Drive %s has leftovers (%s); recovering before the change", key, state)
                done = recover_drive(host, key, state, tray)
                if not done.clean or not isinstance(done.state, Empty | Loaded):
                    raise DriveBusy(f"recovery left {done.state}", vm=vm, drive=drive)
                state = done.state
            assert isinstance(state, Empty | Loaded)
            log.info("changeCD %s: %s, tray %s; wanted: %s", key, state, tray, target)
            outcome = _run_flow(host, key, state, tray, target)
        if not outcome.clean:
            log.warning("Change on %s succeeded; leftovers kept for recovery: %s",
                        key, outcome.state)
        else:
            log.info("changeCD %s: %s", key, outcome.state if outcome.changed else "no change")
        return dataclasses.replace(outcome, recovered=True) if recovered else outcome

    def recover(self, *vms: VmId) -> RecoveryReport:
        """Clean up every CD-ROM drive of these VMs (e.g. when vdsm recovers a VM)."""
        return recover_vms(self.host, list(vms))

    def recover_all(self) -> RecoveryReport:
        """Recover every VM on the host, as at host start. Volume users recorded for VMs
        the host no longer runs are dropped first (D25)."""
        seen = self.host.counter()
        vms = self.host.hypervisor.vm_ids()
        self.host.forget_vms_but(set(vms), seen)
        return recover_vms(self.host, vms)

    def volume_users(self) -> dict[VolumeRef, frozenset[DriveKey]]:
        """A snapshot of the host-wide volume users (for diagnostics and tests)."""
        with self.host.bookkeeping():
            return self.host.users.snapshot()


def _run_flow(host: Host, key: DriveKey, now: Empty | Loaded, tray: Tray,
              target: CdTarget) -> Outcome:
    """The flow that takes a drive from ``now`` (settled, naming what ``tray`` holds) to
    ``target``; nothing when it is there already."""
    state: DriveState = now
    match target, now:
        case LoadVolume(new), Loaded(old) if old == new:
            return Outcome(state, changed=False)
        case LoadVolume(new), Loaded(old):
            return flows.change(host, key, old, new)
        case LoadVolume(new), Empty():
            return flows.insert(host, key, new)
        case Eject(), Loaded(old):
            return flows.eject(host, key, old)
        case Eject(), Empty():
            if tray == EMPTY_TRAY:
                return Outcome(state, changed=False)
            return flows.eject_file(host, key)
        case LoadPath(path), Empty() if tray == FileTray(path):
            return Outcome(state, changed=False)
        case LoadPath(path), _:
            return flows.load_path(host, key, now if isinstance(now, Loaded) else None, path)
    raise AssertionError(f"no flow for {target} from {now}")
