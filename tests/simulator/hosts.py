"""Scenario documents for the simulator tests, in the simulator's public format.

What these build is what a user writes in a scenario file (plain mappings of strings):
VMs, ISO volumes, ``changeCD`` requests, fault points. Ids come from ``tests/rig.py``
(:func:`rig.uid`), so no UUID is copied here; the shipped examples carry their own, read
from the files by the tests that check them.
"""

from __future__ import annotations

from typing import Any

from rig import POOL, legacy_path, unrelated_metadata, vm_id, volume

VM1 = str(vm_id(1))
VM2 = str(vm_id(2))
A = volume("a").as_dict()
B = volume("b").as_dict()
ISO_PATH = legacy_path("tools")


def pdiv_xml(v: dict[str, str]) -> str:
    """A volume's four ids as vdsm writes them in a device entry (sorted by name)."""
    return "".join(f"<ovirt-vm:{k}>{v[k]}</ovirt-vm:{k}>" for k in sorted(v))


def _with_sdc(entry: str) -> str:
    """vdsm's unrelated metadata of VM1 with ``entry`` as its sdc device."""
    block = unrelated_metadata(VM1)
    device = f'    <ovirt-vm:device devtype="disk" name="sdc">{entry}</ovirt-vm:device>\n'
    return block.replace("</ovirt-vm:vm>", device + "</ovirt-vm:vm>")


# A VM's metadata as vdsm 4.50 left it: much that is not ours, and the sdc entry naming A.
VDSM_450_XML = _with_sdc(pdiv_xml(A))

# The same VM after vdsm 4.50 died preparing B to replace A: the nested pending change.
VDSM_450_PENDING_XML = _with_sdc(
    "<ovirt-vm:change>" + pdiv_xml(B).replace(
        "<ovirt-vm:volumeID>", "<ovirt-vm:state>loading</ovirt-vm:state><ovirt-vm:volumeID>")
    + "</ovirt-vm:change>" + pdiv_xml(A))
assert POOL in VDSM_450_PENDING_XML and "<ovirt-vm:change>" in VDSM_450_PENDING_XML


def block_path(v: dict[str, str]) -> str:
    """Where the report says a tray holds a volume (docs/simulator.md, ``loaded``)."""
    return (f"/rhev/data-center/mnt/blockSD/{v['domainID']}/images/"
            f"{v['imageID']}/{v['volumeID']}")


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


def fail_at(call: str, occurrence: int | None = None, effect: str | None = None
            ) -> dict[str, Any]:
    """A step's named failure point: ``fail_at: {call, occurrence}`` (+ ``fail_effect``)."""
    point: dict[str, Any] = {"call": call}
    if occurrence is not None:
        point["occurrence"] = occurrence
    out: dict[str, Any] = {"fail_at": point}
    if effect is not None:
        out["fail_effect"] = effect
    return out


def crash_at(call: str, occurrence: int | None = None) -> dict[str, Any]:
    """A step's named crash point: ``crash_at: {call, occurrence}``."""
    point: dict[str, Any] = {"call": call}
    if occurrence is not None:
        point["occurrence"] = occurrence
    return {"crash_at": point}


def scenario(vms: list[dict[str, Any]], steps: list[dict[str, Any]],
             **extra: Any) -> dict[str, Any]:
    return {"volumes": [dict(A), dict(B)], "vms": vms, "steps": steps, **extra}
