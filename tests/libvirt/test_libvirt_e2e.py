"""End to end on real QEMU VMs: the service (libvirt + loop profile) through vdsm's verb.

After each step the test looks from outside, as an administrator would: ``virsh
domblklist`` for what the VM sees, ``virsh metadata`` for what the metadata holds, and the
kernel's loop devices for which volumes are active.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from contracts.metadata import unrelated
from lxml import etree
from ovirt_cdrom.adapters.libvirt.metadata import from_libvirt
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.model import DriveName, VmId, VolumeRef
from realvm import UNRELATED_METADATA, RealHost, loop_config, promise_violations

pytestmark = pytest.mark.libvirt

POOL, DOMAIN = str(uuid.uuid4()), str(uuid.uuid4())
SDC = DriveName("sdc")


def new_volume() -> VolumeRef:
    return VolumeRef(POOL, DOMAIN, str(uuid.uuid4()), str(uuid.uuid4()))


def spec(volume: VolumeRef | None) -> dict[str, Any]:
    drive_spec = None if volume is None else {"device": "cdrom", **volume.as_dict()}
    return {"iface": "sata", "index": "2", "drive_spec": drive_spec}


class Host:
    """The real host, the product running on it, and what an administrator sees."""

    def __init__(self, real: RealHost) -> None:
        self.real = real
        self.app = build(loop_config(real))
        self.api = self.app.core.api()
        self.md = self.app.core.metadata()

    def change(self, vm: VmId, volume: VolumeRef | None) -> None:
        assert self.api.changeCD(vm.value, spec(volume)) == {"vmList": {}}

    def visible(self, vm: VmId) -> str | None:
        return self.real.domblklist(vm)["sdc"]

    def active(self, volume: VolumeRef) -> bool:
        image = self.real.storage_root / volume.domain_id / volume.image_id / volume.volume_id
        return str(image) in self.real.attached_loops().values()

    def check(self, vms: list[VmId]) -> None:
        assert promise_violations(self.real, vms) == []


@pytest.fixture
def host(real_host: RealHost) -> Host:
    return Host(real_host)


def test_insert_eject_change_as_the_design_tests_them(host: Host) -> None:
    """The design's "Preposed testing scenarios", step by step."""
    real = host.real
    iso, other = new_volume(), new_volume()
    real.add_volume(iso)
    real.add_volume(other)
    vm = real.create_vm(metadata=UNRELATED_METADATA)
    md_entry = host.md.read

    # Test setup: a VM with a CD.
    host.change(vm, iso)
    assert iso.is_at(host.visible(vm))
    host.check([vm])

    # - eject CD from CD-ROM
    host.change(vm, None)
    assert md_entry(vm, SDC)[0].volume is None  # metadata of this CD was removed
    assert not host.active(iso)  # ISO volume deactivated
    assert host.visible(vm) is None
    host.check([vm])

    # - load CD into CD-ROM
    host.change(vm, iso)
    assert md_entry(vm, SDC)[0].volume == iso  # metadata added
    assert host.active(iso)  # ISO volume activated
    assert iso.is_at(host.visible(vm))  # and the VM sees it (virsh domblklist)
    host.check([vm])

    # - eject CD from CD-ROM
    host.change(vm, None)
    assert md_entry(vm, SDC)[0].volume is None
    assert not host.active(iso)
    assert host.visible(vm) is None  # the VM no longer sees it
    host.check([vm])

    # - change CD in CD-ROM (load one, then change to another)
    host.change(vm, iso)
    host.change(vm, other)
    entries = md_entry(vm, SDC)
    assert [e.volume for e in entries] == [other]  # old metadata removed, new added
    assert not host.active(iso)  # old ISO deactivated
    assert host.active(other)  # new ISO activated
    assert not iso.is_at(host.visible(vm))  # old ISO not visible
    assert other.is_at(host.visible(vm))  # new ISO visible
    host.check([vm])


def test_metadata_outside_the_cdrom_entry_survives(host: Host) -> None:
    real = host.real
    iso = new_volume()
    real.add_volume(iso)
    vm = real.create_vm(persistent=True, metadata=UNRELATED_METADATA)
    before = real.virsh_metadata(vm)
    host.change(vm, iso)
    host.change(vm, None)
    after = real.virsh_metadata(vm)
    assert before is not None and after is not None
    assert unrelated(from_libvirt(etree.tostring(after).decode())) == \
        unrelated(from_libvirt(etree.tostring(before).decode()))
    # libvirt keeps our prefix on our elements and the foreign prefix on the foreign one.
    dumped = real.domain(vm).XMLDesc(0)
    assert '<ovirt-vm:device devtype="disk" name="sdc"/>' in dumped
    assert "<z:item>kept</z:item>" in dumped


def test_shared_iso_across_two_vms_stays_active_until_the_last_eject(host: Host) -> None:
    real = host.real
    iso = new_volume()
    real.add_volume(iso)
    first, second = real.create_vm(), real.create_vm()
    host.change(first, iso)
    host.change(second, iso)
    assert iso.is_at(host.visible(first)) and iso.is_at(host.visible(second))
    host.check([first, second])

    host.change(first, None)
    assert host.visible(first) is None
    assert host.active(iso)  # the second VM still holds it
    assert iso.is_at(host.visible(second))
    host.check([first, second])

    host.change(second, None)
    assert not host.active(iso)
    host.check([first, second])


def test_changes_survive_a_fresh_process(host: Host) -> None:
    """A new service (as after a restart) sees and continues what the first one did."""
    real = host.real
    a, b = new_volume(), new_volume()
    real.add_volume(a)
    real.add_volume(b)
    vm = real.create_vm()
    host.change(vm, a)
    fresh = Host(real)
    assert fresh.app.core.service().recover(vm).clean  # only our VM: libvirtd is shared
    fresh.change(vm, b)
    assert not fresh.active(a) and fresh.active(b)
    fresh.check([vm])


def test_a_vm_destroyed_after_the_listing_is_reported_gone_not_as_an_error(host: Host) -> None:
    """Recovery lists the host's VMs, then reads each: a VM shut down in between (an
    everyday event) has nothing left to recover. Only our own VMs are judged."""
    real = host.real
    kept, destroyed = real.create_vm(), real.create_vm()
    hypervisor = host.app.core.hypervisor()
    listed = [vm for vm in hypervisor.vm_ids() if vm in (kept, destroyed)]
    assert sorted(listed, key=str) == sorted([kept, destroyed], key=str)
    real.destroy_vm(destroyed)
    report = host.app.core.service().recover(*listed)
    assert report.clean, report
    assert report.gone == [destroyed] and not report.vm_errors
    assert [d.vm for d in report.drives] == [kept]
