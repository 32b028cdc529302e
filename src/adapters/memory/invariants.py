"""The in-memory host observed for the product's promises (``domain/promises.py``).

Used by the simulator (its report says whether the host ended consistent) and by the tests:
the one checker, on the host they all run on.
"""

from __future__ import annotations

from collections.abc import Mapping

from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory.host import MemoryHost
from ovirt_cdrom.domain import promises
from ovirt_cdrom.domain.errors import CdromError
from ovirt_cdrom.domain.model import DriveKey, VmId
from ovirt_cdrom.domain.state import DriveState, Unreadable


def unrelated_fingerprint(host: MemoryHost, vm: VmId) -> str:
    """Canonical XML of every metadata node that is not one of the VM's CD-ROM entries.

    Whitespace between elements is ignored: it carries no meaning in vdsm's metadata.
    """
    with host.lock:
        memory_vm = host.vm(vm)
        try:
            block = memory_vm.metadata.element()
        except CdromError:
            return memory_vm.metadata.xml()
        cd_names = {d.value for d in memory_vm.drives}
    return metadata_xml.canonical(block, skip=cd_names)


def fingerprints(host: MemoryHost) -> dict[VmId, str]:
    with host.lock:
        return {vm: unrelated_fingerprint(host, vm) for vm in host.vms}


def observe(host: MemoryHost, baseline: Mapping[VmId, str] | None = None
            ) -> promises.Observation:
    """The host as the promise checker sees it; ``baseline`` the VMs' fingerprints before."""
    with host.lock:
        drives = []
        for vm in host.vms.values():
            for name, drive in vm.drives.items():
                state: DriveState
                try:
                    state = vm.metadata.read(name)
                except CdromError as err:
                    state = Unreadable(err.reason)
                drives.append(promises.ObservedDrive(DriveKey(vm.id, name), drive.tray, state,
                                                     drive.source or "nothing"))
        changed = tuple(vm for vm, before in (baseline or {}).items()
                        if vm in host.vms and unrelated_fingerprint(host, vm) != before)
        return promises.Observation(tuple(drives), frozenset(host.volumes),
                                    frozenset(host.active_volumes()), changed)


def violations(host: MemoryHost, baseline: Mapping[VmId, str] | None = None,
               settled: bool = True) -> list[str]:
    """What breaks the promises on ``host`` now (see ``domain.promises.violations``)."""
    return promises.violations(observe(host, baseline), settled)

