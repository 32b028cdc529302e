"""The libvirt adapters' one retry policy (``LibvirtConnection.run``), on real VMs.

A call on a VM's domain runs through a kept handle; when it fails in a way stale knowledge
explains (the connection died, the kept handle's domain is gone, libvirt refuses a change
built from what was remembered), what was known is dropped and the call runs once more,
fresh: at most twice. Anything else fails at once. Inside vdsm the domains are vdsm's and
nothing is retried. Also: the round trips a change costs with the handles kept.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections import Counter
from collections.abc import Callable
from typing import Any

import libvirt
import pytest
from ovirt_cdrom.adapters.libvirt import (
    LibvirtConnection,
    LibvirtHypervisor,
    LibvirtMetadataRepository,
)
from ovirt_cdrom.adapters.libvirt.connection import Handle, error_code
from ovirt_cdrom.adapters.loop import LoopVolumeActivator
from ovirt_cdrom.adapters.vdsm.domains import VdsmDomains
from ovirt_cdrom.domain.errors import HypervisorError, NoSuchVM
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    DiskType,
    FileTray,
    LoadVolume,
    Media,
    VmId,
)
from ovirt_cdrom.domain.state import EMPTY, Loaded
from ovirt_cdrom.service import CdromService
from realvm import SDC, UNRELATED_METADATA, RealHost
from rig import volume

pytestmark = pytest.mark.libvirt

# An eject of sdc that names the configuration too: libvirt refuses it on a transient
# domain (VIR_ERR_OPERATION_INVALID), as it refuses a change built from a remembered
# "persistent" once the domain was undefined.
EJECT_XML = "<disk type='file' device='cdrom'><target dev='sdc' bus='sata'/></disk>"
LIVE_AND_CONFIG = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG


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


class _Runs:
    """A function for ``Domains.run`` that records each handle it ran on."""

    def __init__(self, body: Callable[[Handle], object]) -> None:
        self.body = body
        self.handles: list[Handle] = []

    def __call__(self, handle: Handle) -> object:
        self.handles.append(handle)
        return self.body(handle)


def _refused_config_change(handle: Handle) -> None:
    handle.dom.updateDeviceFlags(EJECT_XML, LIVE_AND_CONFIG)


def _clients() -> set[str]:
    out = subprocess.run(["virt-admin", "srv-clients-list", "libvirtd"], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()[2:] if line.strip()}


def _disconnect(client: str) -> None:
    subprocess.run(["virt-admin", "client-disconnect", "libvirtd", client], check=True,
                   capture_output=True)


def _code(caught: pytest.ExceptionInfo[BaseException]) -> int | None:
    assert isinstance(caught.value, Exception)
    return error_code(caught.value)


# --- what a change costs ---------------------------------------------------------------------


def test_a_change_costs_one_lookup_per_vm_and_no_repeated_state_queries(
        real_host: RealHost) -> None:
    calls: Counter[str] = Counter()
    connection = LibvirtConnection(real_host.uri,
                                   opener=lambda uri: _Counting(libvirt.open(uri), calls))
    a, b = volume("handles-a"), volume("handles-b")
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
        assert b.in_tray(real_host.trays(vm)[SDC])
        assert real_host.active() == {b}
    finally:
        connection.close()


# --- at most twice ---------------------------------------------------------------------------


def test_a_call_runs_at_most_twice_and_only_when_stale_knowledge_explains_its_failure(
        real_host: RealHost) -> None:
    vm = real_host.create_vm()
    connection = LibvirtConnection(real_host.uri)
    try:
        connection.run(vm, lambda handle: None)  # the handle is kept now
        refused = _Runs(_refused_config_change)
        with pytest.raises(libvirt.libvirtError) as caught:
            connection.run(vm, refused)
        assert _code(caught) == libvirt.VIR_ERR_OPERATION_INVALID
        # Once through the kept handle, once more through a fresh one; then it fails.
        assert len(refused.handles) == 2
        assert refused.handles[0] is not refused.handles[1]
        assert connection.lookups == 2

        # Through a connection that knows nothing (no kept handle), the same refusal
        # runs once.
        fresh = LibvirtConnection(real_host.uri)
        once = _Runs(_refused_config_change)
        with pytest.raises(libvirt.libvirtError):
            fresh.run(vm, once)
        assert len(once.handles) == 1
        fresh.close()

        # An error no stale knowledge explains (malformed XML) fails at once, kept handle
        # or not.
        malformed = _Runs(lambda h: h.dom.updateDeviceFlags("<disk", 0))
        with pytest.raises(libvirt.libvirtError) as caught:
            connection.run(vm, malformed)
        assert _code(caught) == libvirt.VIR_ERR_XML_DETAIL
        assert len(malformed.handles) == 1
    finally:
        connection.close()


# --- the domain under a kept handle ----------------------------------------------------------


def test_a_kept_handle_of_a_destroyed_vm_is_no_such_vm(real_host: RealHost) -> None:
    vm = real_host.create_vm()
    connection = LibvirtConnection(real_host.uri)
    hv, md = LibvirtHypervisor(connection), LibvirtMetadataRepository(connection)
    try:
        assert hv.cdroms(vm) == {SDC: EMPTY_TRAY}
        real_host.domain(vm).destroy()  # transient: gone
        read = _Runs(lambda h: h.dom.XMLDesc(0))
        with pytest.raises(libvirt.libvirtError) as caught:
            connection.run(vm, read)
        assert _code(caught) == libvirt.VIR_ERR_NO_DOMAIN
        # The kept handle failed; the fresh lookup found no domain: the call ran once.
        assert len(read.handles) == 1
        with pytest.raises(NoSuchVM):
            hv.cdroms(vm)
        with pytest.raises(NoSuchVM):
            hv.eject(vm, SDC)
        with pytest.raises(NoSuchVM):
            md.read(vm, SDC)
        with pytest.raises(NoSuchVM):
            md.write(vm, SDC, EMPTY)
    finally:
        connection.close()


def test_a_recreated_vm_is_found_through_a_kept_handle_or_anew(real_host: RealHost) -> None:
    kept, dropped = real_host.create_vm(), real_host.create_vm()
    connection = LibvirtConnection(real_host.uri)
    hv, md = LibvirtHypervisor(connection), LibvirtMetadataRepository(connection)
    try:
        for vm in (kept, dropped):
            assert hv.cdroms(vm) == {SDC: EMPTY_TRAY}
            real_host.domain(vm).destroy()
        with pytest.raises(NoSuchVM):
            hv.cdroms(dropped)  # its handle is forgotten
        # The same UUIDs again (VMs restarted under their ids).
        for vm in (kept, dropped):
            real_host.recreate_vm(vm)
            assert hv.cdroms(vm) == {SDC: EMPTY_TRAY}
            assert md.read(vm, SDC) == EMPTY
            assert not hv.is_migrating(vm)
    finally:
        connection.close()


# --- the connection --------------------------------------------------------------------------


def test_a_dead_connection_reconnects_once(real_host: RealHost) -> None:
    vm = real_host.create_vm()
    before = _clients()
    connection = LibvirtConnection(real_host.uri)
    md, hv = LibvirtMetadataRepository(connection), LibvirtHypervisor(connection)
    try:
        assert md.read(vm, SDC) == EMPTY
        assert hv.cdroms(vm) == {SDC: EMPTY_TRAY}
        assert connection.run(vm, lambda h: dict(h.memo)), "the drives are remembered"
        ours = _clients() - before
        assert len(ours) == 1, ours
        _disconnect(ours.pop())  # libvirtd drops the connection
        job = _Runs(lambda h: h.dom.jobStats())
        connection.run(vm, job)  # through the kept handle of a dead connection, then anew
        assert len(job.handles) == 2
        assert connection.opened == 2 and connection.lookups == 2
        assert connection.run(vm, lambda h: dict(h.memo)) == {}, \
            "a new handle starts knowing nothing"
        assert hv.cdroms(vm) == {SDC: EMPTY_TRAY} and md.read(vm, SDC) == EMPTY
        assert connection.opened == 2 and connection.lookups == 2
    finally:
        connection.close()


def test_a_connection_closed_under_the_adapters_reconnects(real_host: RealHost) -> None:
    seen, unseen = real_host.create_vm(), real_host.create_vm()
    opened: list[Any] = []

    def opener(uri: str) -> Any:
        opened.append(libvirt.open(uri))
        return opened[-1]

    connection = LibvirtConnection(real_host.uri, opener=opener)
    hv, md = LibvirtHypervisor(connection), LibvirtMetadataRepository(connection)
    try:
        assert hv.cdroms(seen) == {SDC: EMPTY_TRAY}
        opened[-1].close()  # e.g. by someone holding the shared object
        assert hv.cdroms(unseen) == {SDC: EMPTY_TRAY}  # the lookup needs a live connection
        assert connection.opened == 2
        assert hv.cdroms(seen) == {SDC: EMPTY_TRAY} and md.read(seen, SDC) == EMPTY
        assert not hv.is_migrating(seen)
        assert connection.opened == 2
    finally:
        connection.close()


def test_a_connection_that_is_dead_again_is_not_tried_a_third_time(
        real_host: RealHost) -> None:
    vm = real_host.create_vm()

    def closed(uri: str) -> Any:
        conn = libvirt.open(uri)
        conn.close()  # what a libvirtd that drops every client hands out
        return conn

    connection = LibvirtConnection(real_host.uri, opener=closed)
    with pytest.raises(HypervisorError):
        LibvirtHypervisor(connection).cdroms(vm)
    assert connection.opened == 2
    connection.close()


# --- remembered knowledge that libvirt refuses -----------------------------------------------


def test_a_remembered_disk_that_libvirt_refuses_is_read_again(real_host: RealHost) -> None:
    calls: Counter[str] = Counter()
    vm = real_host.create_vm()
    connection = LibvirtConnection(real_host.uri,
                                   opener=lambda uri: _Counting(libvirt.open(uri), calls))
    hv = LibvirtHypervisor(connection)
    try:
        assert hv.cdroms(vm) == {SDC: EMPTY_TRAY}  # remembers sdc on SATA with the handle
        real_host.domain(vm).destroy()
        real_host.recreate_vm(vm, bus="scsi")  # the same UUID again, sdc now on SCSI
        device = real_host.attach_loop(real_host.add_file("a.iso"))
        calls.clear()
        hv.load(vm, SDC, Media(device, DiskType.BLOCK))
        assert real_host.trays(vm) == {SDC: FileTray(device)}
        # The remembered SATA <disk> was refused ("cannot modify field 'bus'"); the change
        # ran once more on a fresh handle, which read the drive again.
        assert calls["updateDeviceFlags"] == 2
        assert calls["lookupByUUIDString"] == 1 and calls["XMLDesc"] == 1
    finally:
        connection.close()


def test_a_persistent_vm_undefined_while_running_gets_its_changes_live(
        real_host: RealHost) -> None:
    calls: Counter[str] = Counter()
    vm = real_host.create_vm(persistent=True, metadata=UNRELATED_METADATA)
    connection = LibvirtConnection(real_host.uri,
                                   opener=lambda uri: _Counting(libvirt.open(uri), calls))
    hv, md = LibvirtHypervisor(connection), LibvirtMetadataRepository(connection)
    a = volume("undefined-a")
    try:
        device = real_host.attach_loop(real_host.add_file("a.iso"))
        hv.load(vm, SDC, Media(device, DiskType.BLOCK))  # remembers: persistent
        real_host.domain(vm).undefine()  # now transient: no configuration to change
        calls.clear()
        md.write(vm, SDC, Loaded(a))
        # Written live and to the configuration, refused, written live on a fresh handle.
        assert calls["setMetadata"] == 2 and calls["isPersistent"] == 1
        assert md.read(vm, SDC) == Loaded(a)
        assert real_host.state(vm) == Loaded(a)
        hv.eject(vm, SDC)
        assert real_host.trays(vm) == {SDC: EMPTY_TRAY}
        assert not real_host.domain(vm).isPersistent()
    finally:
        connection.close()


# --- vdsm's domains --------------------------------------------------------------------------


def test_vdsms_domains_are_never_retried(real_host: RealHost) -> None:
    vm, other = real_host.create_vm(), real_host.create_vm()
    dom = real_host.domain(vm)  # vdsm's own domain object
    lookups: list[str] = []

    def lookup(vm_id: str) -> Any:
        lookups.append(vm_id)
        return dom

    domains = VdsmDomains(lookup)
    hv = LibvirtHypervisor(domains)
    assert hv.cdroms(vm) == {SDC: EMPTY_TRAY}

    # A refusal that stale knowledge would explain: vdsm's business, not retried.
    refused = _Runs(_refused_config_change)
    with pytest.raises(libvirt.libvirtError):
        domains.run(vm, refused)
    assert len(refused.handles) == 1

    # The domain gone: NoSuchVM at once.
    dom.destroy()
    read = _Runs(lambda h: h.dom.XMLDesc(0))
    with pytest.raises(libvirt.libvirtError) as caught:
        domains.run(vm, read)
    assert _code(caught) == libvirt.VIR_ERR_NO_DOMAIN and len(read.handles) == 1
    with pytest.raises(NoSuchVM):
        hv.cdroms(vm)

    # Its connection dead: vdsm reconnects, we do not.
    before = _clients()
    conn = libvirt.open(real_host.uri)
    try:
        vdsm_dom = conn.lookupByUUIDString(other.value)
        ours = _clients() - before
        assert len(ours) == 1, ours
        own = LibvirtHypervisor(VdsmDomains(lambda _vm_id: vdsm_dom))
        assert own.cdroms(other) == {SDC: EMPTY_TRAY}
        _disconnect(ours.pop())
        with pytest.raises(HypervisorError):
            own.cdroms(other)
        assert real_host.trays(other) == {SDC: EMPTY_TRAY}
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()  # its server side is gone already
    assert lookups == [vm.value] * 4  # one lookup per call, none again


# --- listing ---------------------------------------------------------------------------------


def test_listing_keeps_the_handles_for_recovery(real_host: RealHost) -> None:
    vms = [real_host.create_vm() for _ in range(2)]
    connection = LibvirtConnection(real_host.uri)
    hv = LibvirtHypervisor(connection)
    listed = hv.vm_ids()
    assert set(vms) <= set(listed)
    for vm in vms:
        assert hv.cdroms(vm) == {SDC: EMPTY_TRAY}
    assert connection.lookups == 0
    assert all(isinstance(v, VmId) for v in listed)
    connection.close()
