"""End to end on real QEMU VMs: the service (libvirt + loop profile) through vdsm's verb.

After each step the test looks from outside, as an administrator would: ``virsh
domblklist`` for what the VM sees, ``virsh metadata`` for what the metadata holds, and the
kernel's loop devices for which volumes are active; the promises are judged on that by the
product's checker (``RealHost.violations``).
"""

from __future__ import annotations

import pytest
from ovirt_cdrom.adapters.vdsm_layout import tray_of
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.model import EMPTY_TRAY, Tray, VmId, VolumeRef
from ovirt_cdrom.domain.state import EMPTY, Loaded
from realvm import SDC, UNRELATED_METADATA, RealHost, loop_config
from rig import SUCCESS, spec, volume

pytestmark = pytest.mark.libvirt


class Host:
    """The real host, the product running on it, and what an administrator sees."""

    def __init__(self, real: RealHost) -> None:
        self.real = real
        self.app = build(loop_config(real), environ={})
        self.api = self.app.core.api()

    def change(self, vm: VmId, target: VolumeRef | None) -> None:
        assert self.api.changeCD(vm.value, spec(target)) == SUCCESS

    def visible(self, vm: VmId) -> Tray:
        """What ``virsh domblklist`` shows in the VM's sdc."""
        return tray_of(self.real.sources(vm)[SDC])

    def active(self, target: VolumeRef) -> bool:
        return self.real.is_active(target)

    def check(self, *vms: VmId) -> None:
        assert self.real.violations(*vms) == []


@pytest.fixture
def host(real_host: RealHost) -> Host:
    return Host(real_host)


def test_insert_eject_change_as_the_design_tests_them(host: Host) -> None:
    """The design's "Preposed testing scenarios", step by step."""
    real = host.real
    iso, other = volume("iso"), volume("other")
    real.add_volume(iso)
    real.add_volume(other)
    vm = real.create_vm(metadata=UNRELATED_METADATA)
    real.settle(vm)

    # Test setup: a VM with a CD.
    host.change(vm, iso)
    assert iso.in_tray(host.visible(vm))
    host.check(vm)

    # - eject CD from CD-ROM
    host.change(vm, None)
    assert real.state(vm) == EMPTY  # metadata of this CD was removed
    assert not host.active(iso)  # ISO volume deactivated
    assert host.visible(vm) == EMPTY_TRAY
    host.check(vm)

    # - load CD into CD-ROM
    host.change(vm, iso)
    assert real.state(vm) == Loaded(iso)  # metadata added
    assert host.active(iso)  # ISO volume activated
    assert iso.in_tray(host.visible(vm))  # and the VM sees it (virsh domblklist)
    host.check(vm)

    # - eject CD from CD-ROM
    host.change(vm, None)
    assert real.state(vm) == EMPTY
    assert not host.active(iso)
    assert host.visible(vm) == EMPTY_TRAY  # the VM no longer sees it
    host.check(vm)

    # - change CD in CD-ROM (load one, then change to another)
    host.change(vm, iso)
    host.change(vm, other)
    assert real.state(vm) == Loaded(other)  # old metadata removed, new added
    assert not host.active(iso)  # old ISO deactivated
    assert host.active(other)  # new ISO activated
    assert not iso.in_tray(host.visible(vm))  # old ISO not visible
    assert other.in_tray(host.visible(vm))  # new ISO visible
    host.check(vm)


def test_metadata_outside_the_cdrom_entry_survives(host: Host) -> None:
    real = host.real
    iso = volume("iso")
    real.add_volume(iso)
    vm = real.create_vm(persistent=True, metadata=UNRELATED_METADATA)
    real.settle(vm)
    before = real.fingerprint(vm)
    host.change(vm, iso)
    assert real.fingerprint(vm) == before
    host.change(vm, None)
    assert real.fingerprint(vm) == before
    host.check(vm)
    # libvirt keeps our prefix on our elements and the foreign prefix on the foreign one.
    dumped = real.domain(vm).XMLDesc(0)
    assert '<ovirt-vm:device devtype="disk" name="sdc"/>' in dumped
    assert "<z:item>kept</z:item>" in dumped


def test_shared_iso_across_two_vms_stays_active_until_the_last_eject(host: Host) -> None:
    real = host.real
    iso = volume("iso")
    real.add_volume(iso)
    first, second = real.create_vm(), real.create_vm()
    real.settle(first, second)
    host.change(first, iso)
    host.change(second, iso)
    assert iso.in_tray(host.visible(first)) and iso.in_tray(host.visible(second))
    host.check(first, second)

    host.change(first, None)
    assert host.visible(first) == EMPTY_TRAY
    assert host.active(iso)  # the second VM still holds it
    assert iso.in_tray(host.visible(second))
    host.check(first, second)

    host.change(second, None)
    assert not host.active(iso)
    host.check(first, second)


def test_changes_survive_a_fresh_process(host: Host) -> None:
    """A new service (as after a restart) sees and continues what the first one did."""
    real = host.real
    a, b = volume("a"), volume("b")
    real.add_volume(a)
    real.add_volume(b)
    vm = real.create_vm()
    real.settle(vm)
    host.change(vm, a)
    fresh = Host(real)
    assert fresh.app.core.service().recover(vm).clean  # only our VM: libvirtd is shared
    fresh.change(vm, b)
    assert not fresh.active(a) and fresh.active(b)
    fresh.check(vm)


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
