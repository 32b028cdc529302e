"""Races found on real hosts, replayed deterministically on the in-memory host.

The in-memory metadata adapter writes as libvirt does (read the whole block, replace the
drive's entries, write the whole block back), so two writers of one VM that interleave
lose one's entries unless something keeps them apart; its ``interleave`` callable runs
between the read and the write. Other pauses are put at exact points with the fault
plan's hooks before and after named calls (``rig.before``/``rig.after``), never with
sleeps. Each test fails when the guard it is named for is taken out of the service.
"""

from __future__ import annotations

import threading

from dependency_injector import providers
from ovirt_cdrom.adapters.memory import (
    MemoryHypervisor,
    MemoryMetadataRepository,
    MemoryVolumeActivator,
)
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    DriveKey,
    DriveName,
    Eject,
    LoadVolume,
    VmId,
)
from ovirt_cdrom.domain.state import Ejecting, Loaded
from ovirt_cdrom.ports import Ports
from rig import SDC, SDD, Rig, vm_id, volume


def make_rig(vms: int = 1, drives: int = 1) -> tuple[Rig, list[VmId]]:
    rig = Rig()
    ids = [rig.add_vm(vm_id(("race", n)), drives=[("sata", index)
                                                   for index in range(2, 2 + drives)])
           for n in range(vms)]
    rig.settle()
    return rig, ids


def test_two_drives_of_one_vm_changed_at_once_keep_each_others_entries() -> None:
    """One VM, two CD-ROMs changed at the same time: the first metadata write is paused
    between reading the block and writing it back while the other drive's change runs.
    Guard: the service's one writer of a VM's metadata at a time (``Host.write``)."""
    other: list[threading.Thread] = []
    x, y = volume("x"), volume("y")

    def pause_first_write(_vm: VmId, _drive: DriveName) -> None:
        if other:
            return
        thread = threading.Thread(
            target=rig.service.change_cd, args=(vm, SDD, LoadVolume(y)), daemon=True)
        other.append(thread)
        thread.start()
        # Unserialized, the other change writes its entries meanwhile (in microseconds);
        # serialized, it waits for this write and this wait times out.
        thread.join(timeout=1.0)

    rig = Rig()
    rig.app.memory.ports.override(providers.Object(Ports(
        MemoryHypervisor(rig.host), MemoryVolumeActivator(rig.host),
        MemoryMetadataRepository(rig.host, rig.encoding, interleave=pause_first_write))))
    vm = rig.add_vm(vm_id("race"), drives=[("sata", 2), ("sata", 3)])
    rig.add_volume(x)
    rig.add_volume(y)
    rig.settle()
    rig.service.change_cd(vm, SDC, LoadVolume(x))
    other[0].join(timeout=30)
    assert not other[0].is_alive()
    assert rig.state(vm, SDC) == Loaded(x)
    assert rig.state(vm, SDD) == Loaded(y)
    assert rig.violations() == []


def test_recovery_beside_ejects_records_no_user_that_let_go() -> None:
    """Two VMs share ISO X. Recovery reads the second VM (holding X); before it records
    that, the second VM ejects X. Then, while recovery is still going, the first VM ejects
    X too: it is the last user, so X must be torn down. A stale record of the second VM
    would keep X active, named by no metadata and held by no VM, for good.
    Guard: recovery records what it read only if no operation touched the drive since
    (``Host.claim_if_unchanged``)."""
    rig, (first, second) = make_rig(vms=2)
    x = volume("x")
    for vm in (first, second):
        rig.hold(vm, x)
    service = rig.service
    reads: list[str] = []
    done: list[str] = []

    def eject_second_after_its_read(call: str) -> None:
        reads.append(call)
        if len(reads) == 2:  # the second VM's read_all has just been answered
            assert service.change_cd(second, SDC, Eject()).changed
            done.append("second")

    def eject_first_once(_call: str) -> None:
        if done == ["second"]:  # the second pass, looking at the second VM again
            done.append("first")
            assert service.change_cd(first, SDC, Eject()).changed

    rig.after("metadata.read_all", eject_second_after_its_read)
    # The second pass looks at the second VM again (it changed): the first VM ejects then.
    rig.before("hypervisor.cdrom", eject_first_once)
    report = rig.step(service.recover_all)
    rig.plan.clear_hooks()
    assert report is not None and report.clean
    assert done == ["second", "first"]
    assert rig.tray(first) == EMPTY_TRAY
    assert rig.active() == set()
    assert service.volume_users() == {}


def test_a_vm_destroyed_while_holding_a_shared_iso_does_not_keep_it_active() -> None:
    """Guard: a recorded user whose VM is gone is no user any more (``Host._still_using``,
    D25)."""
    rig, (first, second) = make_rig(vms=2)
    x = rig.add_volume(volume("x"))
    for vm in (first, second):
        rig.change_cd(vm, LoadVolume(x))
    rig.host.remove_vm(second)  # shut down: its QEMU no longer holds X
    rig.change_cd(first, Eject())
    assert rig.active() == set()
    assert rig.service.volume_users() == {}


def test_recover_all_forgets_the_users_of_vms_no_longer_running() -> None:
    """Guard: recover_all drops the records of VMs the host no longer runs
    (``Host.forget_vms_but``)."""
    rig, (first, second) = make_rig(vms=2)
    x = rig.add_volume(volume("x"))
    for vm in (first, second):
        rig.change_cd(vm, LoadVolume(x))
    rig.host.remove_vm(second)
    report = rig.step(rig.service.recover_all)
    assert report is not None and report.clean
    assert rig.service.volume_users() == {x: frozenset({DriveKey(first, SDC)})}


def test_a_vm_gone_between_listing_and_reading_is_reported_gone_not_as_an_error() -> None:
    """Guard: recovery reports a VM that went away before it was read as gone
    (``recover_vms``)."""
    rig, (first, second) = make_rig(vms=2)
    rig.after("hypervisor.vm_ids", lambda _call: rig.host.remove_vm(second))
    report = rig.step(rig.service.recover_all)
    assert report is not None
    assert report.clean and report.gone == [second] and not report.vm_errors
    assert [d.vm for d in report.drives] == [first]


def test_a_vm_gone_while_its_drive_is_recovered_is_reported_gone() -> None:
    """The VM is destroyed after recovery read it, while recovery cleans up its drive.
    Guard: a flow's write to a VM that is gone raises NoSuchVM (``write_quietly``), which
    recovery reports as gone."""
    rig, (vm,) = make_rig()
    x = rig.add_volume(volume("x"), active=True)
    rig.write(vm, SDC, Ejecting(x))
    rig.before("volumes.is_active", lambda _call: rig.host.remove_vm(vm))
    report = rig.step(lambda: rig.service.recover(vm))
    assert report is not None
    assert report.clean and report.gone == [vm] and report.drives == []
