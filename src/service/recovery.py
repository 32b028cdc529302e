"""Recovery: clean up a drive's leftovers (observe, decide with the table, act), and the
two passes over the host that vdsm runs at start.

The decision is the domain's (:func:`ovirt_cdrom.domain.recovery.decide`); here it is
carried out. When a teardown fails the metadata is left as it was, so that it still names
the active volume and the next recovery retries (D11).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ovirt_cdrom.domain.errors import CdromError, NoSuchDrive, NoSuchVM, typed
from ovirt_cdrom.domain.model import DriveKey, DriveName, Tray, VmId
from ovirt_cdrom.domain.recovery import decide
from ovirt_cdrom.domain.state import DriveState, consistent
from ovirt_cdrom.service.flows import teardown_quietly, write_quietly
from ovirt_cdrom.service.host import Host

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DriveRecovery:
    """What recovery did for one drive."""

    vm: VmId
    drive: DriveName
    state: DriveState | None   # the drive's state afterwards (None: it could not be read)
    changed: bool
    clean: bool                # the metadata names what the tray holds, no marker left
    error: CdromError | None = None
    case: str | None = None    # the recovery row acted on (None: nothing to recover)
    design: str | None = None  # that row's actions, in the design's words


@dataclass(slots=True)
class RecoveryReport:
    drives: list[DriveRecovery] = field(default_factory=list)
    vm_errors: dict[VmId, CdromError] = field(default_factory=dict)
    # VMs that went away (shut down, destroyed) before or while recovery looked at them:
    # they hold nothing any more, so nothing is left to recover. Not an error.
    gone: list[VmId] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.vm_errors and all(d.clean and d.error is None for d in self.drives)


def recover_drive(host: Host, key: DriveKey, state: DriveState, tray: Tray) -> DriveRecovery:
    """Clean up one drive whose state and tray were just read (its lock held)."""
    vm, drive = key.vm, key.drive
    if consistent(state, tray):
        return DriveRecovery(vm, drive, state, changed=False, clean=True)
    active = frozenset(v for v in state.volumes if host.volumes.is_active(v))
    decision = decide(state, tray, active)
    log.info("Recovering CD-ROM %s (%s, tray %s): case %s: %s",
             key, state, tray, decision.case, decision.design)
    done = DriveRecovery(vm, drive, state, changed=False, clean=False,
                         case=decision.case, design=decision.design)
    all_gone = True
    for volume in decision.teardown:
        all_gone = teardown_quietly(host, key, volume) and all_gone
    if not all_gone:
        log.warning("Recovery of %s left %s; a later recovery will retry", key, state)
        return done
    if decision.final == state:
        return DriveRecovery(vm, drive, state, False, True, None, decision.case, decision.design)
    if not write_quietly(host, key, decision.final):
        return done
    return DriveRecovery(vm, drive, decision.final, True, True, None, decision.case,
                         decision.design)


def recover_vms(host: Host, vms: list[VmId]) -> RecoveryReport:
    """Recover every CD-ROM drive of ``vms`` in two passes.

    The first records which volumes each drive holds, so that no drive's recovery tears
    down a volume another drive holds; a drive an operation touched since it was read is
    not recorded from that read (D25). The second recovers each drive under its lock, and
    reads again a drive touched since the first pass.
    """
    report = RecoveryReport()
    observed: list[tuple[VmId, Mapping[DriveName, Tray], Mapping[DriveName, DriveState],
                         int]] = []
    for vm in vms:
        seen = host.counter()
        try:
            trays = host.hypervisor.cdroms(vm)
            states = host.metadata.read_all(vm, list(trays))
        except NoSuchVM:
            log.info("VM %s went away before its CD-ROMs were recovered", vm)
            report.gone.append(vm)
            continue
        except Exception as failure:  # an adapter's untyped error too: one VM fails
            err = typed(failure)
            log.error("Cannot recover CD-ROMs of VM %s: %s", vm, err)
            report.vm_errors[vm] = err
            continue
        observed.append((vm, trays, states, seen))
        for drive, tray in trays.items():
            host.claim_if_unchanged(DriveKey(vm, drive), states[drive], tray, seen)
    for vm, trays, states, seen in observed:
        try:
            report.drives += [_recover_observed(host, DriveKey(vm, drive), states[drive],
                                                tray, seen) for drive, tray in trays.items()]
        except NoSuchVM:
            log.info("VM %s went away while its CD-ROMs were recovered", vm)
            report.gone.append(vm)
    return report


def _recover_observed(host: Host, key: DriveKey, state: DriveState, tray: Tray,
                      seen: int) -> DriveRecovery:
    """Recover a drive the first pass read; raises NoSuchVM if its VM went away."""
    try:
        with host.operation(key) as previous:
            if previous > seen:
                # An operation ran on the drive since the first pass read it: read again.
                tray = host.hypervisor.cdrom(key.vm, key.drive)
                state = host.metadata.read(key.vm, key.drive)
            host.note_holder(key, state, tray)
            return recover_drive(host, key, state, tray)
    except NoSuchVM:
        raise
    except NoSuchDrive:
        log.info("Drive %s went away while it was recovered", key)
        return DriveRecovery(key.vm, key.drive, None, changed=False, clean=True)
    except Exception as failure:  # an adapter's untyped error too: one drive fails
        err = typed(failure)
        log.error("Cannot recover drive %s: %s", key, err)
        return DriveRecovery(key.vm, key.drive, None, changed=False, clean=False, error=err)
