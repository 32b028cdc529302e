"""The libvirt adapters keep each VM's domain handle: the round trips a change costs, and
what happens when the connection or the domain under a kept handle goes away."""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from typing import Any

import libvirt
import pytest
from ovirt_cdrom.adapters.libvirt import (
    LibvirtConnection,
    LibvirtHypervisor,
    LibvirtMetadataRepository,
)
from ovirt_cdrom.adapters.loop import LoopVolumeActivator
from ovirt_cdrom.domain.errors import NoSuchVM
from ovirt_cdrom.domain.model import DriveName, LoadVolume, VmId, VolumeRef
from ovirt_cdrom.service import CdromService
from realvm import RUN_ID, VM_PREFIX, RealHost, domain_xml

pytestmark = pytest.mark.libvirt

SDC = DriveName("sdc")


class _Counting:
    """A libvirt connection (or domain) that counts the methods called on it and on the
    domains it hands out, by name."""

    def __init__(self, target: Any, calls: Counter[str]) -> None:
        self._target, self._calls = target, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls[name] += 1
            result = attr(*args, **kwargs)
            if isinstance(result, libvirt.virDomain):
                return _Counting(result, self._calls)
            if isinstance(result, list):
                return [_Counting(r, self._calls) if isinstance(r, libvirt.virDomain) else r
                        for r in result]
            return result
        return call


def _volume() -> VolumeRef:
    return VolumeRef(*(str(uuid.uuid4()) for _ in range(4)))


def _clients() -> set[str]:
    out = subprocess.run(["virt-admin", "srv-clients-list", "libvirtd"], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()[2:] if line.strip()}


def test_a_change_costs_one_lookup_per_vm_and_no_repeated_state_queries(
        real_host: RealHost) -> None:
    calls: Counter[str] = Counter()
    connection = LibvirtConnection(real_host.uri,
                                   opener=lambda uri: _Counting(libvirt.open(uri), calls))
    a, b = _volume(), _volume()
    for v in (a, b):
        real_host.add_volume(v)
    vm = real_host.create_vm()
    activator = LoopVolumeActivator(real_host.storage_root, real_host.run_root)
    service = CdromService(LibvirtHypervisor(connection), activator,
                           LibvirtMetadataRepository(connection))
    try:
        assert service.change_cd(vm, SDC, LoadVolume(a)).changed
        assert calls["lookupByUUIDString"] == 1 and calls["isPersistent"] == 1
        calls.clear()
        assert service.change_cd(vm, SDC, LoadVolume(b)).changed
        # A change on a transient VM: the migration check (the job), the tray and the
        # drive's <disk> (one XMLDesc, remembered for the load), one metadata read and,
        # per write, one read-modify-write. Persistence was asked once for the handle.
        assert calls == Counter({"jobStats": 1, "XMLDesc": 1, "metadata": 3,
                                 "setMetadata": 2, "updateDeviceFlags": 1})
        assert b.is_at(real_host.trays(vm)[SDC])
        assert activator.is_active(b) and not activator.is_active(a)
    finally:
        connection.close()


def test_closing_the_underlying_connection_reconnects(real_host: RealHost) -> None:
    seen, unseen = real_host.create_vm(), real_host.create_vm()
    connection = LibvirtConnection(real_host.uri)
    hv = LibvirtHypervisor(connection)
    md = LibvirtMetadataRepository(connection)
    assert hv.cdroms(seen) == {SDC: None}
    connection.get().close()  # e.g. closed by someone holding the shared object
    assert hv.cdroms(unseen) == {SDC: None}  # the lookup needs a live connection
    assert connection.opened == 2
    assert hv.cdroms(seen) == {SDC: None} and md.read(seen, SDC) == ()
    assert not hv.is_migrating(seen)
    assert connection.opened == 2
    connection.close()


def test_kept_handles_follow_a_reconnect(real_host: RealHost) -> None:
    vm = real_host.create_vm()
    before = _clients()
    connection = LibvirtConnection(real_host.uri)
    md = LibvirtMetadataRepository(connection)
    hv = LibvirtHypervisor(connection)

    def memo() -> dict[str, Any]:
        return connection.call_domain(vm.value, lambda dom: connection.memo(vm.value, dom))

    assert md.read(vm, SDC) == ()
    assert hv.cdroms(vm) == {SDC: None}
    assert memo(), "the drives' elements are remembered with the handle"
    ours = _clients() - before
    assert len(ours) == 1, ours
    subprocess.run(["virt-admin", "client-disconnect", "libvirtd", ours.pop()], check=True,
                   capture_output=True)
    assert not hv.is_migrating(vm)  # through the kept handle of a dead connection
    assert connection.opened == 2 and connection.lookups == 2
    assert memo() == {}, "a new handle starts knowing nothing"
    assert md.read(vm, SDC) == () and connection.lookups == 2
    connection.close()


def test_a_kept_handle_of_a_destroyed_vm_is_no_such_vm_and_a_recreated_vm_is_found(
        real_host: RealHost) -> None:
    vm = real_host.create_vm()
    connection = LibvirtConnection(real_host.uri)
    hv = LibvirtHypervisor(connection)
    md = LibvirtMetadataRepository(connection)
    assert hv.cdroms(vm) == {SDC: None}
    real_host.domain(vm).destroy()  # transient: gone
    with pytest.raises(NoSuchVM):
        hv.cdroms(vm)
    with pytest.raises(NoSuchVM):
        md.read(vm, SDC)
    # The same UUID again (a VM restarted under its id): found, through a handle or anew.
    real_host.conn.createXML(domain_xml(f"{VM_PREFIX}{RUN_ID}-again", vm.value), 0)
    assert hv.cdroms(vm) == {SDC: None}
    assert md.read(vm, SDC) == ()
    connection.close()


def test_listing_keeps_the_handles_for_recovery(real_host: RealHost) -> None:
    vms = [real_host.create_vm() for _ in range(2)]
    connection = LibvirtConnection(real_host.uri)
    hv = LibvirtHypervisor(connection)
    listed = hv.vm_ids()
    assert set(vms) <= set(listed)
    for vm in vms:
        assert hv.cdroms(vm) == {SDC: None}
    assert connection.lookups == 0
    assert all(isinstance(v, VmId) for v in listed)
    connection.close()
