"""A CD-ROM entry keeps what vdsm wrote beside its PDIV (e.g. volumeChain) while it names
the same volume, so that a change rolled back leaves the entry as it was."""

from __future__ import annotations

import logging

import pytest
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.errors import HypervisorError, StorageError
from ovirt_cdrom.domain.model import CdEntry, CdromSlot, DriveName, VmId, VolumeRef

U = "{:08d}-0000-0000-0000-000000000000".format
OLD = VolumeRef(U(9), U(8), U(7), U(1))
NEW = VolumeRef(U(9), U(8), U(7), U(2))
VM = VmId(U(1))
SDC = DriveName("sdc")


def _block(volume: VolumeRef) -> str:
    return (
        '<ovirt-vm:vm xmlns:ovirt-vm="http://ovirt.org/vm/1.0">'
        '<ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>'
        f'<ovirt-vm:device devtype="disk" name="sdc" custom="kept">'
        f"<ovirt-vm:domainID>{volume.domain_id}</ovirt-vm:domainID>"
        f"<ovirt-vm:imageID>{volume.image_id}</ovirt-vm:imageID>"
        f"<ovirt-vm:poolID>{volume.pool_id}</ovirt-vm:poolID>"
        f"<ovirt-vm:volumeID>{volume.volume_id}</ovirt-vm:volumeID>"
        "<ovirt-vm:volumeChain><ovirt-vm:volumeChainNode>"
        "<ovirt-vm:leaseOffset type=\"int\">105906176</ovirt-vm:leaseOffset>"
        "<ovirt-vm:path>/rhev/x</ovirt-vm:path>"
        "</ovirt-vm:volumeChainNode></ovirt-vm:volumeChain>"
        "</ovirt-vm:device></ovirt-vm:vm>")


def _canonical(xml: str) -> str:
    return metadata_xml.serialize(metadata_xml.parse_block(xml))


@pytest.mark.parametrize("encoding", ["design", "vdsm-4.50"])
@pytest.mark.parametrize("failing", ["volumes.prepare", "hypervisor.load"])
def test_failed_change_leaves_the_entry_with_its_volume_chain(encoding: str,
                                                              failing: str) -> None:
    logging.disable(logging.CRITICAL)
    try:
        app = build({"metadata_encoding": encoding})
        host = app.memory.host()
        host.add_vm(VM, metadata=_block(OLD))
        host.add_volume(OLD, active=True)
        host.add_volume(NEW)
        host.add_drive(VM, "sata", 2, source=host.path_of(OLD))
        before = host.vm(VM).metadata_xml
        error = StorageError("x") if failing.startswith("volumes") else HypervisorError("x")
        host.script.fail(failing, error)
        answer = app.core.api().changeCD(VM.value, {"iface": "sata", "index": 2,
                                                    "drive_spec": NEW.as_dict()})
        assert "code" in answer
        assert _canonical(host.vm(VM).metadata_xml) == _canonical(before)
    finally:
        logging.disable(logging.NOTSET)


def test_marking_a_change_keeps_the_old_entry_extras_on_its_ejecting_entry() -> None:
    root = metadata_xml.parse_block(_block(OLD))
    entries = metadata_xml.read_entries(root, SDC)
    slot = CdromSlot.read(entries)
    assert isinstance(slot, CdromSlot)
    pending = slot.begin_load(NEW)
    metadata_xml.write_entries(root, SDC, pending.entries())
    ejecting, loading = root.findall(f"{{{metadata_xml.NS}}}device")
    assert ejecting.get("state") == "ejecting" and ejecting.get("custom") == "kept"
    assert ejecting.find(f"{{{metadata_xml.NS}}}volumeChain") is not None
    assert loading.find(f"{{{metadata_xml.NS}}}volumeChain") is None
    assert loading.get("custom") is None


def test_a_new_volume_does_not_inherit_the_old_volume_chain() -> None:
    root = metadata_xml.parse_block(_block(OLD))
    metadata_xml.write_entries(root, SDC, [CdEntry(None, NEW)])
    (device,) = root.findall(f"{{{metadata_xml.NS}}}device")
    assert device.find(f"{{{metadata_xml.NS}}}volumeChain") is None
    assert metadata_xml.read_entries(root, SDC) == (CdEntry(None, NEW),)
