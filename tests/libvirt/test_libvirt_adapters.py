"""What the libvirt adapters do beyond the port contracts: reconnecting, persistent
domains, the disk XML they send, and how they read migration."""

from __future__ import annotations

import subprocess

import libvirt
import pytest
from lxml import etree
from ovirt_cdrom.adapters.libvirt import (
    LibvirtConnection,
    LibvirtHypervisor,
    LibvirtMetadataRepository,
)
from ovirt_cdrom.adapters.libvirt.hypervisor import is_migrating, media_disk_xml
from ovirt_cdrom.adapters.libvirt.metadata import from_libvirt, to_libvirt
from ovirt_cdrom.domain.errors import HypervisorTimeout, NoSuchVM
from ovirt_cdrom.domain.model import CdEntry, DiskType, DriveName, Media, VolumeRef
from realvm import UNRELATED_METADATA, RealHost

SDC = DriveName("sdc")
A = VolumeRef("13345997-b94f-42dd-b8ef-a1392f65cebf", "88252cf6-381e-48f0-8795-a294a32c7149",
              "89f05c7d-b961-4935-993f-514499024515", "626a493f-5214-4337-b580-96a1ce702c2a")

EMPTY_DISK = etree.fromstring(
    "<disk type='file' device='cdrom'><driver name='qemu' error_policy='report'/>"
    "<source startupPolicy='optional' index='3'/><backingStore/>"
    "<target dev='sdc' bus='sata'/><readonly/><boot order='2'/>"
    "<alias name='ua-79287c04'/><address type='drive' controller='0' bus='0' unit='2'/>"
    "</disk>")


def _clients() -> set[str]:
    out = subprocess.run(["virt-admin", "srv-clients-list", "libvirtd"], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()[2:] if line.strip()}


# --- without libvirtd ----------------------------------------------------------------------


def test_block_media_becomes_a_block_disk_keeping_the_drive() -> None:
    disk = etree.fromstring(media_disk_xml(EMPTY_DISK, Media("/dev/loop7", DiskType.BLOCK)))
    assert disk.get("type") == "block"
    assert disk.find("source").attrib == {"dev": "/dev/loop7"}
    assert disk.find("driver").attrib == {"name": "qemu", "error_policy": "report",
                                          "type": "raw"}
    for kept in ("target", "readonly", "boot", "alias", "address"):
        assert etree.tostring(disk.find(kept)) == etree.tostring(EMPTY_DISK.find(kept))
    assert disk.find("backingStore") is None


def test_file_media_becomes_a_file_disk_and_eject_drops_the_source() -> None:
    disk = etree.fromstring(media_disk_xml(EMPTY_DISK, Media("/iso/x.iso", DiskType.FILE)))
    assert (disk.get("type"), disk.find("source").attrib) == ("file", {"file": "/iso/x.iso"})
    empty = etree.fromstring(media_disk_xml(disk, None))
    assert empty.get("type") == "file" and empty.find("source") is None


@pytest.mark.parametrize(("stats", "state", "expected"), [
    ({"type": libvirt.VIR_DOMAIN_JOB_NONE}, (libvirt.VIR_DOMAIN_RUNNING, 1), False),
    ({"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
      "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT},
     (libvirt.VIR_DOMAIN_RUNNING, 1), True),
    ({"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
      "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN},
     (libvirt.VIR_DOMAIN_RUNNING, 1), True),
    ({"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
      "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP},
     (libvirt.VIR_DOMAIN_RUNNING, 1), False),
    ({"type": libvirt.VIR_DOMAIN_JOB_NONE},
     (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY), True),
], ids=["idle", "migration-out", "migration-in", "backup", "post-copy-paused"])
def test_migration_is_read_from_job_and_state(stats: dict[str, int], state: tuple[int, int],
                                              expected: bool) -> None:
    assert is_migrating(stats, state) is expected


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
def test_reconnects_when_libvirtd_drops_the_connection(real_host: RealHost) -> None:
    vm = real_host.create_vm()
    before = _clients()
    connection = LibvirtConnection(real_host.uri)
    hv = LibvirtHypervisor(connection)
    assert hv.cdroms(vm) == {SDC: None}
    ours = _clients() - before
    assert len(ours) == 1, ours
    subprocess.run(["virt-admin", "client-disconnect", "libvirtd", ours.pop()], check=True,
                   capture_output=True)
    assert hv.cdroms(vm) == {SDC: None}  # the same call, on a new connection
    assert connection.opened == 2
    connection.close()


@pytest.mark.libvirt
def test_persistent_domain_gets_media_and_metadata_in_its_config_too(
        real_host: RealHost) -> None:
    vm = real_host.create_vm(persistent=True, metadata=UNRELATED_METADATA)
    connection = LibvirtConnection(real_host.uri)
    device = real_host.attach_loop(real_host.add_file("a.iso"))
    LibvirtHypervisor(connection).load(vm, SDC, Media(device, DiskType.BLOCK))
    LibvirtMetadataRepository(connection).write(vm, SDC, (CdEntry(None, A),))
    config = real_host.domain(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert f"<source dev='{device}'/>" in config
    assert "<ovirt-vm:volumeID>626a493f-5214-4337-b580-96a1ce702c2a</ovirt-vm:volumeID>" \
        in config
    LibvirtHypervisor(connection).eject(vm, SDC)
    assert device not in real_host.domain(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    connection.close()
