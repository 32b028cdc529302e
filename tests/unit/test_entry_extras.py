"""A CD-ROM entry keeps what vdsm wrote beside its PDIV (e.g. volumeChain) while it names
the same volume, so that a change rolled back leaves the entry as it was (D20)."""

from __future__ import annotations

import pytest
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain.model import VolumeRef
from ovirt_cdrom.domain.state import Changing, Loaded
from rig import SDC, Rig, block_media, spec, vm_id, volume

OLD, NEW = volume("old"), volume("new")
VM = vm_id("vm")
_VOLUME_CHAIN = f"{{{metadata_xml.NS}}}volumeChain"


def _block(volume: VolumeRef) -> str:
    return (
        f'<ovirt-vm:vm xmlns:ovirt-vm="{metadata_xml.NS}">'
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


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
@pytest.mark.parametrize("failing", ["volumes.prepare", "hypervisor.load"])
def test_failed_change_leaves_the_entry_with_its_volume_chain(encoding: Encoding,
                                                              failing: str) -> None:
    rig = Rig(encoding=encoding)
    rig.add_vm(VM, metadata=_block(OLD))
    # The VM started with OLD in the tray and vdsm's entry for it (nothing of ours written).
    rig.add_volume(OLD, active=True)
    rig.host.put(VM, SDC, block_media(OLD))
    rig.add_volume(NEW)
    rig.settle()
    before = rig.host.vm(VM).metadata.xml()
    rig.fail(failing)
    answer = rig.change(VM, spec(NEW))
    assert answer is not None and "code" in answer
    assert _canonical(rig.host.vm(VM).metadata.xml()) == _canonical(before)
    assert rig.violations() == []


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
def test_marking_a_change_keeps_the_old_entry_extras_on_the_old_cds_entry(
        encoding: Encoding) -> None:
    root = metadata_xml.parse_block(_block(OLD))
    assert metadata_xml.read(root, SDC) == Loaded(OLD)
    metadata_xml.write(root, SDC, Changing(OLD, NEW), encoding)
    devices = root.findall(f"{{{metadata_xml.NS}}}device")
    if encoding is Encoding.DESIGN:
        ejecting, loading = devices
        assert ejecting.get("state") == "ejecting"
    else:
        (ejecting,) = devices
        (loading,) = ejecting.findall(f"{{{metadata_xml.NS}}}change")
    assert ejecting.get("custom") == "kept"
    assert ejecting.find(_VOLUME_CHAIN) is not None
    assert loading.find(_VOLUME_CHAIN) is None
    assert loading.get("custom") is None
    assert metadata_xml.read(root, SDC) == Changing(OLD, NEW)


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
def test_a_new_volume_does_not_inherit_the_old_volume_chain(encoding: Encoding) -> None:
    root = metadata_xml.parse_block(_block(OLD))
    metadata_xml.write(root, SDC, Loaded(NEW), encoding)
    (device,) = root.findall(f"{{{metadata_xml.NS}}}device")
    assert device.find(_VOLUME_CHAIN) is None
    assert device.get("custom") is None
    assert metadata_xml.read(root, SDC) == Loaded(NEW)
