"""Scenario building blocks for the simulator tests: VMs, ISO volumes, requests."""

from __future__ import annotations

from typing import Any

POOL = "13345997-b94f-42dd-b8ef-a1392f65cebf"
DOMAIN = "88252cf6-381e-48f0-8795-a294a32c7149"
VM1 = "6f4b1f2e-0c1d-4a8e-9b7a-3c2d1e0f9a8b"
VM2 = "2a1b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
A = {"poolID": POOL, "domainID": DOMAIN, "imageID": "89f05c7d-b961-4935-993f-514499024515",
     "volumeID": "626a493f-5214-4337-b580-96a1ce702c2a"}
B = {"poolID": POOL, "domainID": DOMAIN, "imageID": "0b7c2f0e-3f7a-4b1e-8d8e-4a0a9c6f1d2e",
     "volumeID": "5d2e9a41-7c3b-4f6a-9e1d-2b8c7a6f5e4d"}
ISO_PATH = "/rhev/data-center/mnt/iso.example.com:_iso/images/tools.iso"

# A VM's metadata as vdsm 4.50 left it: much that is not ours, and the sdc entry naming A.
VDSM_450_XML = f"""<ovirt-vm:vm xmlns:ovirt-vm="http://ovirt.org/vm/1.0">
    <ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
    <ovirt-vm:destroy_on_reboot type="bool">False</ovirt-vm:destroy_on_reboot>
    <ovirt-vm:memGuaranteedSize type="int">1024</ovirt-vm:memGuaranteedSize>
    <ovirt-vm:custom><ovirt-vm:viodiskcache>writeback</ovirt-vm:viodiskcache></ovirt-vm:custom>
    <ovirt-vm:device mac_address="56:6f:7a:c1:00:01">
        <ovirt-vm:network>ovirtmgmt</ovirt-vm:network>
    </ovirt-vm:device>
    <ovirt-vm:device devtype="disk" name="sdc">
        <ovirt-vm:domainID>{A["domainID"]}</ovirt-vm:domainID>
        <ovirt-vm:imageID>{A["imageID"]}</ovirt-vm:imageID>
        <ovirt-vm:poolID>{A["poolID"]}</ovirt-vm:poolID>
        <ovirt-vm:volumeID>{A["volumeID"]}</ovirt-vm:volumeID>
    </ovirt-vm:device>
    <ovirt-vm:device devtype="disk" name="sda">
        <ovirt-vm:domainID>{DOMAIN}</ovirt-vm:domainID>
        <ovirt-vm:imageID>d8b7c6a5-4e3f-4a2b-9c1d-0e9f8a7b6c5d</ovirt-vm:imageID>
        <ovirt-vm:poolID>{POOL}</ovirt-vm:poolID>
        <ovirt-vm:volumeID>a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d</ovirt-vm:volumeID>
        <ovirt-vm:volumeChain><ovirt-vm:volumeChainNode>
            <ovirt-vm:leaseOffset type="int">108003328</ovirt-vm:leaseOffset>
            <ovirt-vm:leasePath>/dev/{DOMAIN}/leases</ovirt-vm:leasePath>
        </ovirt-vm:volumeChainNode></ovirt-vm:volumeChain>
    </ovirt-vm:device>
</ovirt-vm:vm>"""


# The same VM after vdsm 4.50 died preparing B to replace A: the nested pending change.
VDSM_450_PENDING_XML = VDSM_450_XML.replace(
    f"<ovirt-vm:volumeID>{A['volumeID']}</ovirt-vm:volumeID>\n    </ovirt-vm:device>",
    f"<ovirt-vm:volumeID>{A['volumeID']}</ovirt-vm:volumeID>\n"
    "        <ovirt-vm:change>"
    f"<ovirt-vm:domainID>{B['domainID']}</ovirt-vm:domainID>"
    f"<ovirt-vm:imageID>{B['imageID']}</ovirt-vm:imageID>"
    f"<ovirt-vm:poolID>{B['poolID']}</ovirt-vm:poolID>"
    "<ovirt-vm:state>loading</ovirt-vm:state>"
    f"<ovirt-vm:volumeID>{B['volumeID']}</ovirt-vm:volumeID>"
    "</ovirt-vm:change>\n    </ovirt-vm:device>", 1)
assert VDSM_450_PENDING_XML != VDSM_450_XML


def block_path(volume: dict[str, str]) -> str:
    return (f"/rhev/data-center/mnt/blockSD/{volume['domainID']}/images/"
            f"{volume['imageID']}/{volume['volumeID']}")


def source_of(loaded: dict[str, str] | str | None) -> str | None:
    """The path a tray holds for a scenario's ``loaded`` value."""
    if isinstance(loaded, dict):
        return block_path(loaded)
    return loaded or None  # path "" is the legacy eject


def vm(vm_id: str, loaded: dict[str, str] | str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": vm_id, "drives": [{"iface": "sata", "index": 2, "loaded": loaded}], **extra}


def change(vm_id: str, target: dict[str, str] | str | None) -> dict[str, Any]:
    """A changeCD step: a volume (by PDIV), a legacy path (a string), or eject (None)."""
    spec: dict[str, Any] = {"iface": "sata", "index": "2"}
    if isinstance(target, str):
        spec["path"] = target
    else:
        spec["drive_spec"] = None if target is None else {"device": "cdrom", **target}
    return {"changeCD": {"vmID": vm_id, "cdromspec": spec}}


def scenario(vms: list[dict[str, Any]], steps: list[dict[str, Any]],
             **extra: Any) -> dict[str, Any]:
    return {"volumes": [dict(A), dict(B)], "vms": vms, "steps": steps, **extra}
