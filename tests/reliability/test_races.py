"""Races found on real hosts, replayed deterministically on the in-memory host.

The in-memory metadata adapter writes as libvirt does (read the whole block, replace the
drive's entries, write the whole block back), so two writers of one VM that interleave
lose one's entries unless something keeps them apart. Pauses are put at exact points with
the host's script (``before``/``after`` hooks), never with sleeps.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from ovirt_cdrom.adapters.memory import (
    MemoryHost,
    MemoryHypervisor,
    MemoryMetadataRepository,
    MemoryVolumeActivator,
)
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.model import (
    CdromSlot,
    DriveKey,
    DriveName,
    Eject,
    LoadVolume,
    VmId,
    VolumeRef,
    block_volume_path,
)
from ovirt_cdrom.service import CdromService

SDC, SDD = DriveName("sdc"), DriveName("sdd")


def volume() -> VolumeRef:
    return VolumeRef(*(str(uuid.uuid4()) for _ in range(4)))


@dataclass
class Host:
    host: MemoryHost
    service: CdromService

    def slot(self, vm: VmId, drive: DriveName = SDC) -> object:
        return CdromSlot.read(self.host.vm(vm).read_entries(drive))

    def fresh_service(self) -> CdromService:
        """A service started anew over the same host (after a restart)."""
        return CdromService(MemoryHypervisor(self.host), MemoryVolumeActivator(self.host),
                            MemoryMetadataRepository(self.host))


def make_host(vms: int = 1, drives: int = 1) -> tuple[Host, list[VmId]]:
    app = build({"adapters": "memory"})
    host: MemoryHost = app.memory.host()
    ids = [VmId(str(uuid.uuid4())) for _ in range(vms)]
    for vm in ids:
        host.add_vm(vm)
        for index in range(2, 2 + drives):
            host.add_drive(vm, "sata", index)
    return Host(host, app.core.service()), ids


def test_two_drives_of_one_vm_changed_at_once_keep_each_others_entries() -> None:
    """One VM, two CD-ROMs changed at the same time: the first metadata write is paused
    between reading the block and writing it back while the other drive's change runs."""
    rig, (vm,) = make_host(drives=2)
    x, y = volume(), volume()
    rig.host.add_volume(x)
    rig.host.add_volume(y)
    other: list[threading.Thread] = []

    def pause_first_write(_call: str) -> None:
        if other:
            return
        thread = threading.Thread(
            target=rig.service.change_cd, args=(vm, SDD, LoadVolume(y)), daemon=True)
        other.append(thread)
        thread.start()
        # Unserialized, the other change writes its entries meanwhile (in microseconds);
        # serialized, it waits for this write and this wait times out.
        thread.join(timeout=1.0)

    rig.host.script.before("metadata.write", pause_first_write)
    rig.service.change_cd(vm, SDC, LoadVolume(x))
    other[0].join(timeout=30)
    assert not other[0].is_alive()
    assert rig.slot(vm, SDC) == CdromSlot(current=x)
    assert rig.slot(vm, SDD) == CdromSlot(current=y)


def test_recovery_beside_ejects_records_no_user_that_let_go() -> None:
    """Two VMs share ISO X. Recovery reads the second VM (holding X); before it records
    that, the second VM ejects X. Then, while recovery is still going, the first VM ejects
    X too: it is the last user, so X must be torn down. A stale record of the second VM
    would keep X active, named by no metadata and held by no VM, for good."""
    rig, (first, second) = make_host(vms=2)
    x = volume()
    rig.host.add_volume(x, active=True)
    for vm in (first, second):
        rig.host.drive(vm, SDC).source = block_volume_path(x)
        rig.host.vm(vm).write_entries(SDC, CdromSlot(current=x).entries(), Encoding.VDSM_450)
    service = rig.fresh_service()
    reads: list[str] = []
    done: list[str] = []

    def eject_second_after_its_read(_call: str) -> None:
        reads.append(_call)
        if len(reads) == 2:  # the second VM's read_all has just been answered
            assert service.change_cd(second, SDC, Eject()).changed
            done.append("second")

    def eject_first_once(_call: str) -> None:
        if done == ["second"]:  # the second pass, looking at the second VM again
            done.append("first")
            assert service.change_cd(first, SDC, Eject()).changed

    rig.host.script.after("metadata.read_all", eject_second_after_its_read)
    # The second pass looks at the second VM again (it changed): the first VM ejects then.
    rig.host.script.before("hypervisor.cdrom", eject_first_once)
    assert service.recover_all().clean
    rig.host.script.clear()
    assert done == ["second", "first"]
    assert rig.host.drive(first, SDC).source is None
    assert rig.host.active_volumes() == []
    assert service.volume_users() == {}


def test_a_vm_destroyed_while_holding_a_shared_iso_does_not_keep_it_active() -> None:
    rig, (first, second) = make_host(vms=2)
    x = volume()
    rig.host.add_volume(x)
    for vm in (first, second):
        rig.service.change_cd(vm, SDC, LoadVolume(x))
    rig.host.remove_vm(second)  # shut down: its QEMU no longer holds X
    rig.service.change_cd(first, SDC, Eject())
    assert rig.host.active_volumes() == []
    assert rig.service.volume_users() == {}


def test_recover_all_forgets_the_users_of_vms_no_longer_running() -> None:
    rig, (first, second) = make_host(vms=2)
    x = volume()
    rig.host.add_volume(x)
    for vm in (first, second):
        rig.service.change_cd(vm, SDC, LoadVolume(x))
    rig.host.remove_vm(second)
    assert rig.service.recover_all().clean
    assert rig.service.volume_users() == {x: frozenset({DriveKey(first, SDC)})}


def test_a_vm_gone_between_listing_and_reading_is_reported_gone_not_as_an_error() -> None:
    rig, (first, second) = make_host(vms=2)
    rig.host.script.after("hypervisor.vm_ids", lambda _call: rig.host.remove_vm(second))
    report = rig.service.recover_all()
    assert report.clean and report.gone == [second] and not report.vm_errors
    assert [d.vm for d in report.drives] == [first]


def test_a_vm_gone_while_its_drive_is_recovered_is_reported_gone() -> None:
    """The VM is destroyed after recovery read it, while recovery cleans up its drive."""
    rig, (vm,) = make_host()
    x = volume()
    rig.host.add_volume(x, active=True)
    rig.host.vm(vm).write_entries(SDC, CdromSlot(current=x).begin_eject().entries(),
                                  Encoding.VDSM_450)
    rig.host.script.before("volumes.is_active", lambda _call: rig.host.remove_vm(vm))
    report = rig.service.recover(vm)
    assert report.clean and report.gone == [vm] and report.drives == []
