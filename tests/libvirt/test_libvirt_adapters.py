"""What the libvirt adapters do beyond the port contracts: the disk XML they send, persistent
domains, the metadata's namespace, and how they read migration. (Their retry policy:
test_libvirt_handles.py.)"""

from __future__ import annotations

import libvirt
import pytest
from lxml import etree
from ovirt_cdrom.adapters.libvirt import (
    LibvirtConnection,
    LibvirtHypervisor,
    LibvirtMetadataRepository,
)
from ovirt_cdrom.adapters.libvirt.hypervisor import (
    cdrom_elements,
    domain_is_migrating,
    job_is_migration,
    media_disk_xml,
    minimal_disk_xml,
    parse_domain_xml,
    state_is_migration,
)
from ovirt_cdrom.adapters.libvirt.metadata import from_libvirt, to_libvirt
from ovirt_cdrom.domain.errors import HypervisorTimeout, NoSuchVM
from ovirt_cdrom.domain.model import EMPTY_TRAY, DiskType, FileTray, Media
from ovirt_cdrom.domain.state import Loaded
from realvm import SDC, UNRELATED_METADATA, RealHost
from rig import volume

A = volume("a")

EMPTY_DISK = etree.fromstring(
    "<disk type='file' device='cdrom'><driver name='qemu' error_policy='report'/>"
    "<source startupPolicy='optional' index='3'/><backingStore/>"
    "<target dev='sdc' bus='sata'/><readonly/><boot order='2'/>"
    "<alias name='ua-79287c04'/><address type='drive' controller='0' bus='0' unit='2'/>"
    "</disk>")


def _child(parent: etree._Element, tag: str) -> etree._Element:
    """``parent``'s first ``tag`` child, which the test expects to be there."""
    child = parent.find(tag)
    assert child is not None, f"no <{tag}> in {etree.tostring(parent)!r}"
    return child


def _attrs(element: etree._Element) -> dict[str, str]:
    """``element``'s attributes as a plain dict."""
    return {str(name): str(value) for name, value in element.items()}


# --- without libvirtd ----------------------------------------------------------------------


def test_block_media_becomes_a_block_disk_keeping_the_drive() -> None:
    disk = etree.fromstring(media_disk_xml(EMPTY_DISK, Media("/dev/loop7", DiskType.BLOCK)))
    assert disk.get("type") == "block"
    assert _attrs(_child(disk, "source")) == {"dev": "/dev/loop7"}
    assert _attrs(_child(disk, "driver")) == {"name": "qemu", "error_policy": "report",
                                             "type": "raw"}
    for kept in ("target", "readonly", "boot", "alias", "address"):
        assert etree.tostring(_child(disk, kept)) == etree.tostring(_child(EMPTY_DISK, kept))
    assert disk.find("backingStore") is None


def test_file_media_becomes_a_file_disk_and_eject_drops_the_source() -> None:
    disk = etree.fromstring(media_disk_xml(EMPTY_DISK, Media("/iso/x.iso", DiskType.FILE)))
    assert (disk.get("type"), _attrs(_child(disk, "source"))) == (
        "file", {"file": "/iso/x.iso"})
    empty = etree.fromstring(media_disk_xml(disk, None))
    assert empty.get("type") == "file" and empty.find("source") is None


def test_minimal_disk_names_the_source_and_the_target_only() -> None:
    disk = etree.fromstring(minimal_disk_xml(EMPTY_DISK, Media("/dev/loop7", DiskType.BLOCK)))
    assert (disk.tag, _attrs(disk)) == ("disk", {"type": "block", "device": "cdrom"})
    assert [(el.tag, _attrs(el)) for el in disk] == [
        ("driver", {"type": "raw"}), ("source", {"dev": "/dev/loop7"}),
        ("target", {"dev": "sdc", "bus": "sata"})]
    disk = etree.fromstring(minimal_disk_xml(EMPTY_DISK, Media("/iso/x.iso", DiskType.FILE)))
    assert disk.get("type") == "file"
    assert _attrs(_child(disk, "source")) == {"file": "/iso/x.iso"}
    empty = etree.fromstring(minimal_disk_xml(disk, None))
    assert [(el.tag, _attrs(el)) for el in empty] == [
        ("target", {"dev": "sdc", "bus": "sata"})]
    assert empty.get("type") == "file"


@pytest.mark.parametrize(("stats", "expected"), [
    ({"type": libvirt.VIR_DOMAIN_JOB_NONE}, False),
    ({"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
      "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT}, True),
    ({"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
      "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN}, True),
    ({"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
      "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP}, False),
    ({"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED}, True),
], ids=["idle", "migration-out", "migration-in", "backup", "job-without-operation"])
def test_migration_is_read_from_the_job(stats: dict[str, int], expected: bool) -> None:
    assert job_is_migration(stats) is expected


@pytest.mark.parametrize(("state", "expected"), [
    ((libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED), False),
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER), False),
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION), True),
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY), True),
    ((libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY), True),
], ids=["running", "paused", "paused-migration", "post-copy-paused", "post-copy-running"])
def test_migration_is_read_from_the_state(state: tuple[int, int], expected: bool) -> None:
    assert state_is_migration(state) is expected


class _Refusing:
    """A domain whose job statistics libvirt refuses with ``code``, in ``state``: what the
    receiving host of a migration answers. (An incoming migration needs a second host,
    so this one answer is played by a stand-in; the idle case runs on libvirtd below.)"""

    def __init__(self, code: int, state: tuple[int, int]) -> None:
        self.code, self._state = code, state
        self.calls: list[str] = []

    def jobStats(self) -> dict[str, int]:  # noqa: N802 (libvirt's name)
        self.calls.append("jobStats")
        err = libvirt.libvirtError("migration statistics are available only on the "
                                   "source host")
        err.err = (self.code, 0, str(err), 2, "", None, None, 0, 0)
        raise err

    def state(self) -> list[int]:
        self.calls.append("state")
        return list(self._state)


def test_refused_job_statistics_fall_back_to_the_state() -> None:
    unsupported = libvirt.VIR_ERR_OPERATION_UNSUPPORTED
    incoming = _Refusing(unsupported, (libvirt.VIR_DOMAIN_PAUSED,
                                       libvirt.VIR_DOMAIN_PAUSED_MIGRATION))
    assert domain_is_migrating(incoming) is True
    assert incoming.calls == ["jobStats", "state"]
    post_copy = _Refusing(unsupported, (libvirt.VIR_DOMAIN_RUNNING,
                                        libvirt.VIR_DOMAIN_RUNNING_POSTCOPY))
    assert domain_is_migrating(post_copy) is True
    # Refused with a state that does not explain it: not guessed, an error (no change).
    with pytest.raises(libvirt.libvirtError):
        domain_is_migrating(_Refusing(unsupported, (libvirt.VIR_DOMAIN_RUNNING,
                                                    libvirt.VIR_DOMAIN_RUNNING_BOOTED)))
    # A driver without job statistics: the state decides.
    no_support = _Refusing(libvirt.VIR_ERR_NO_SUPPORT, (libvirt.VIR_DOMAIN_RUNNING,
                                                        libvirt.VIR_DOMAIN_RUNNING_BOOTED))
    assert domain_is_migrating(no_support) is False


def test_metadata_goes_to_libvirt_without_our_namespace_and_comes_back_with_it() -> None:
    block = from_libvirt("<vm><clusterVersion>4.7</clusterVersion>"
                         "<z:x xmlns:z='urn:z'><z:y/></z:x></vm>")
    assert block.nsmap["ovirt-vm"] == "http://ovirt.org/vm/1.0"
    assert block[0].tag == "{http://ovirt.org/vm/1.0}clusterVersion"
    assert block[1].tag == "{urn:z}x"
    sent = to_libvirt(block)
    assert sent.startswith("<vm>") and "<clusterVersion>4.7</clusterVersion>" in sent
    assert '<z:x xmlns:z="urn:z"><z:y/></z:x>' in sent


def test_hostile_metadata_is_refused() -> None:
    from ovirt_cdrom.domain.errors import InvalidMetadata  # noqa: PLC0415

    with pytest.raises(InvalidMetadata):
        from_libvirt('<!DOCTYPE vm [<!ENTITY e SYSTEM "file:///etc/passwd">]><vm>&e;</vm>')


def test_timeouts_are_typed_as_timeouts() -> None:
    from ovirt_cdrom.adapters.libvirt.connection import map_error  # noqa: PLC0415

    err = libvirt.libvirtError("Timed out during operation: cannot acquire state change lock")
    err.err = (libvirt.VIR_ERR_OPERATION_TIMEOUT, 0, str(err), 2, "", None, None, 0, 0)
    assert isinstance(map_error(err, "load"), HypervisorTimeout)
    err.err = (libvirt.VIR_ERR_NO_DOMAIN, 0, "no domain", 2, "", None, None, 0, 0)
    assert isinstance(map_error(err, "load", vm="x"), NoSuchVM)


# --- on a real host ------------------------------------------------------------------------


@pytest.mark.libvirt
def test_an_idle_vm_is_not_migrating_from_its_job_alone(real_host: RealHost) -> None:
    vm = real_host.create_vm()
    connection = LibvirtConnection(real_host.uri)
    assert not LibvirtHypervisor(connection).is_migrating(vm)
    assert job_is_migration(real_host.domain(vm).jobStats()) is False
    connection.close()


@pytest.mark.libvirt
def test_a_change_keeps_the_live_drive_and_domblklist_shows_the_source(
        real_host: RealHost) -> None:
    vm = real_host.create_vm()
    connection = LibvirtConnection(real_host.uri)
    hv = LibvirtHypervisor(connection)

    def drive() -> dict[str, bytes]:
        disk = cdrom_elements(parse_domain_xml(real_host.domain(vm).XMLDesc(0)))[SDC]
        return {tag: etree.tostring(_child(disk, tag)) for tag in ("alias", "address",
                                                                "readonly", "target")} | {
            "error_policy": (_child(disk, "driver").get("error_policy") or "").encode()}

    before = drive()
    devices = [real_host.attach_loop(real_host.add_file(f"{n}.iso")) for n in "ab"]
    assert hv.cdrom(vm, SDC) == EMPTY_TRAY  # the flows read the tray first
    for device in devices:
        hv.load(vm, SDC, Media(device, DiskType.BLOCK))
        assert hv.cdrom(vm, SDC) == FileTray(device)  # a device outside vdsm's layout
        assert real_host.sources(vm) == {SDC: device}
        assert drive() == before
    iso = real_host.add_file("c.iso")
    hv.load(vm, SDC, Media(str(iso), DiskType.FILE))
    assert real_host.sources(vm) == {SDC: str(iso)}
    hv.eject(vm, SDC)
    assert hv.cdrom(vm, SDC) == EMPTY_TRAY and real_host.sources(vm) == {SDC: None}
    assert drive() == before
    connection.close()


@pytest.mark.libvirt
def test_persistent_domain_gets_media_and_metadata_in_its_config_too(
        real_host: RealHost) -> None:
    vm = real_host.create_vm(persistent=True, metadata=UNRELATED_METADATA)
    connection = LibvirtConnection(real_host.uri)
    device = real_host.attach_loop(real_host.add_file("a.iso"))
    LibvirtHypervisor(connection).load(vm, SDC, Media(device, DiskType.BLOCK))
    LibvirtMetadataRepository(connection).write(vm, SDC, Loaded(A))
    config = real_host.domain(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert f"<source dev='{device}'/>" in config
    # The configuration takes the element whole: the drive's own settings stay in it.
    disk = cdrom_elements(parse_domain_xml(config))[SDC]
    assert (_child(disk, "alias").get("name") or "").startswith("ua-")
    assert _child(disk, "driver").get("error_policy") == "report"
    assert f"<ovirt-vm:volumeID>{A.volume_id}</ovirt-vm:volumeID>" in config
    LibvirtHypervisor(connection).eject(vm, SDC)
    assert device not in real_host.domain(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    connection.close()
