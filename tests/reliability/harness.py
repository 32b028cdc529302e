"""A host in memory with the product over it, fault injection wired in, and the figures.

Every reliability test builds a :class:`Rig`: several VMs whose metadata holds much that is
not ours (``clusterVersion``, a regular disk with its ``volumeChain``, a NIC, ``custom``
properties, typed values), CD-ROM drives spread over them, ISO volumes they share, legacy
ISO files. The ports are the in-memory adapters wrapped by the fault-injection decorators
(``fault_injection: on`` in the container), so a test arms ``rig.plan`` for one step.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.faults import FaultPlan, FaultyMetadataRepository
from ovirt_cdrom.adapters.memory import MemoryHost, MemoryMetadataRepository
from ovirt_cdrom.adapters.memory.invariants import fingerprints
from ovirt_cdrom.adapters.vdsm_api import VdsmApi
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.errors import CdromError
from ovirt_cdrom.domain.model import (
    CdromSlot,
    DriveKey,
    DriveName,
    Unreadable,
    VmId,
    VolumeRef,
    block_volume_path,
)
from ovirt_cdrom.service import CdromService

POOL = "13345997-b94f-42dd-b8ef-a1392f65cebf"
DOMAIN = "88252cf6-381e-48f0-8795-a294a32c7149"
FIGURES_FILE = Path("/tmp/ovirt-cdrom-reliability-figures.json")

# What the closing note of issue 5 reports; every test adds to it.
FIGURES: Counter[str] = Counter()


def write_figures() -> None:
    FIGURES_FILE.write_text(json.dumps(dict(sorted(FIGURES.items())), indent=2) + "\n")


def uid(kind: str, n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"reliability-{kind}-{n}"))


def volume(n: int) -> VolumeRef:
    return VolumeRef(POOL, DOMAIN, uid("image", n), uid("volume", n))


def vm_id(n: int) -> VmId:
    return VmId(uid("vm", n))


def unrelated_metadata(n: int) -> str:
    """A VM's metadata as vdsm writes it, with nothing of ours in it."""
    sd, img, vol = uid("sda-domain", n), uid("sda-image", n), uid("sda-volume", n)
    return f"""<ovirt-vm:vm xmlns:ovirt-vm="http://ovirt.org/vm/1.0">
    <ovirt-vm:balloonTarget type="int">4194304</ovirt-vm:balloonTarget>
    <ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
    <ovirt-vm:destroy_on_reboot type="bool">False</ovirt-vm:destroy_on_reboot>
    <ovirt-vm:launchPaused>false</ovirt-vm:launchPaused>
    <ovirt-vm:memGuaranteedSize type="int">4096</ovirt-vm:memGuaranteedSize>
    <ovirt-vm:minGuaranteedMemoryMb type="int">4096</ovirt-vm:minGuaranteedMemoryMb>
    <ovirt-vm:resumeBehavior>auto_resume</ovirt-vm:resumeBehavior>
    <ovirt-vm:custom>
        <ovirt-vm:viodiskcache>writeback</ovirt-vm:viodiskcache>
        <ovirt-vm:sap_agent>true &amp; &lt;ok&gt;</ovirt-vm:sap_agent>
    </ovirt-vm:custom>
    <ovirt-vm:device mac_address="56:6f:1a:2b:00:{n:02x}">
        <ovirt-vm:network>ovirtmgmt</ovirt-vm:network>
    </ovirt-vm:device>
    <ovirt-vm:device devtype="disk" name="sda">
        <ovirt-vm:domainID>{sd}</ovirt-vm:domainID>
        <ovirt-vm:guestName>/dev/sda</ovirt-vm:guestName>
        <ovirt-vm:imageID>{img}</ovirt-vm:imageID>
        <ovirt-vm:poolID>{POOL}</ovirt-vm:poolID>
        <ovirt-vm:volumeID>{vol}</ovirt-vm:volumeID>
        <ovirt-vm:volumeChain>
            <ovirt-vm:volumeChainNode>
                <ovirt-vm:domainID>{sd}</ovirt-vm:domainID>
                <ovirt-vm:imageID>{img}</ovirt-vm:imageID>
                <ovirt-vm:leaseOffset type="int">105906176</ovirt-vm:leaseOffset>
                <ovirt-vm:leasePath>/dev/{sd}/leases</ovirt-vm:leasePath>
                <ovirt-vm:path>/rhev/data-center/mnt/blockSD/{sd}/images/{img}/{vol}</ovirt-vm:path>
                <ovirt-vm:volumeID>{vol}</ovirt-vm:volumeID>
            </ovirt-vm:volumeChainNode>
        </ovirt-vm:volumeChain>
    </ovirt-vm:device>
</ovirt-vm:vm>"""


@dataclass
class Drive:
    key: DriveKey
    iface: str
    index: int

    @property
    def vm(self) -> VmId:
        return self.key.vm

    @property
    def name(self) -> DriveName:
        return self.key.drive


@dataclass
class Rig:
    app: Any
    host: MemoryHost
    plan: FaultPlan
    encoding: metadata_xml.Encoding
    service: CdromService
    api: VdsmApi
    vms: list[VmId]
    drives: list[Drive]
    volumes: list[VolumeRef]
    files: list[str]
    baseline: dict[VmId, str] = field(default_factory=dict)
    restarts: int = 0

    def restart(self, encoding: metadata_xml.Encoding | None = None) -> None:
        """The process died: a fresh service (no locks, no volume users) over the same host.

        ``encoding``: the restarted agent writes this encoding (e.g. after an upgrade from
        vdsm 4.50); both are always read.
        """
        self.plan.reset()
        metadata = self.app.metadata()
        if encoding is not None and encoding is not self.encoding:
            self.encoding = encoding
            metadata = FaultyMetadataRepository(
                MemoryMetadataRepository(self.host, encoding), self.plan)
        self.service = CdromService(self.app.hypervisor(), self.app.volumes(), metadata)
        self.api = VdsmApi(self.service)
        self.restarts += 1

    def tray(self, drive: Drive) -> str | None:
        return self.host.drive(drive.vm, drive.name).source

    def slot(self, drive: Drive) -> CdromSlot | Unreadable:
        block = self.host.vm(drive.vm).metadata
        return CdromSlot.read(metadata_xml.read_entries(block, drive.name))

    def snapshot(self) -> dict[str, Any]:
        """Everything a call could change on the host, in comparable form."""
        with self.host.lock:
            return {
                "trays": {str(vm.id): {d.value: (m.source, m.disk_type)
                                       for d, m in vm.drives.items()}
                          for vm in self.host.vms.values()},
                "metadata": {str(vm.id): vm.metadata_xml for vm in self.host.vms.values()},
                "active": dict(self.host.volumes),
            }

    def meaning(self) -> dict[str, Any]:
        """The host in meaning: trays, active volumes, slots, unrelated metadata."""
        with self.host.lock:
            return {
                "trays": {str(d.key): self.tray(d) for d in self.drives},
                "active": dict(self.host.volumes),
                "slots": {str(d.key): self.slot(d) for d in self.drives},
                "unrelated": fingerprints(self.host),
            }


def unrecorded_active(rig: Rig) -> list[str]:
    """Active volumes that no tray holds and no metadata entry names: leaked for good.

    The flows' order (mark, prepare, switch, tear down, then unmark) keeps this empty at
    every instant, crashes included: recovery can only clean up what something records.
    """
    with rig.host.lock:
        named: set[VolumeRef] = set()
        for vm in rig.host.vms.values():
            block = vm.metadata
            for name, drive in vm.drives.items():
                held = rig.host.volume_at(drive.source)
                if held is not None:
                    named.add(held)
                try:
                    entries = metadata_xml.read_entries(block, name)
                except CdromError:
                    continue
                if isinstance(entries, Unreadable):
                    named.update(entries.volumes)
                    continue
                named.update(e.volume for e in entries if e.volume is not None)
        return [f"volume {v} is active, held by no VM and named by no metadata"
                for v in rig.host.active_volumes() if v not in named]


# Which drives each VM has: (iface, index) pairs.
LAYOUT: tuple[tuple[tuple[str, int], ...], ...] = (
    (("sata", 2),),
    (("sata", 2), ("ide", 3)),
    (("scsi", 2),),
    (),
)


def build_rig(*, n_volumes: int = 3, n_files: int = 2,
              layout: tuple[tuple[tuple[str, int], ...], ...] = LAYOUT,
              encoding: metadata_xml.Encoding = metadata_xml.Encoding.DESIGN,
              loaded: Mapping[int, int] | None = None,
              missing_volume: bool = True) -> Rig:
    """A host with ``layout`` VMs, ``n_volumes`` ISO volumes (all inactive) and files.

    ``loaded``: drive number -> volume number whose CD the drive holds at start (the
    volume active, the metadata naming it). ``missing_volume``: ``rig.volumes`` ends
    with one volume storage does not have.
    """
    files = [f"/iso/legacy-{n}.iso" for n in range(n_files)]
    app = build({"fault_injection": "on", "metadata_encoding": encoding.value})
    host: MemoryHost = app.memory.host()
    host.files = set(files)
    volumes = [volume(n) for n in range(n_volumes)]
    for v in volumes:
        host.add_volume(v)
    if missing_volume:
        volumes.append(volume(99))
    vms: list[VmId] = []
    drives: list[Drive] = []
    for n, buses in enumerate(layout):
        vm = vm_id(n)
        host.add_vm(vm, metadata=unrelated_metadata(n))
        vms.append(vm)
        for iface, index in buses:
            name = host.add_drive(vm, iface, index)
            drives.append(Drive(DriveKey(vm, name), iface, index))
    for d, n in (loaded or {}).items():
        drive, vol = drives[d], volumes[n]
        host.volumes[vol] = True
        host.drive(drive.vm, drive.name).source = block_volume_path(vol)
        metadata_xml.write_entries(host.vm(drive.vm).metadata, drive.name,
                                   CdromSlot(current=vol).entries(), encoding)
    plan: FaultPlan = app.fault_plan()
    service: CdromService = app.core.service()
    rig = Rig(app, host, plan, encoding, service, app.core.api(), vms, drives, volumes,
              files)
    rig.baseline = fingerprints(host)
    return rig


def spec(drive: Drive, target: tuple[Any, ...], rig: Rig) -> dict[str, Any]:
    """vdsm's cdromspec for a target: ("volume", n), ("eject",), ("path", n), ("path-eject",)."""
    base: dict[str, Any] = {"iface": drive.iface, "index": str(drive.index)}
    kind = target[0]
    if kind == "volume":
        base["drive_spec"] = {"device": "cdrom", **rig.volumes[target[1]].as_dict()}
    elif kind == "eject":
        base["drive_spec"] = None
    elif kind == "path":
        base["path"] = rig.files[target[1]] if target[1] < len(rig.files) \
            else "/iso/missing.iso"
    else:
        base["path"] = ""
    return base


def expected_tray(target: tuple[Any, ...], rig: Rig) -> str | None:
    kind = target[0]
    if kind == "volume":
        return block_volume_path(rig.volumes[target[1]])
    if kind == "path":
        return rig.files[target[1]] if target[1] < len(rig.files) else "/iso/missing.iso"
    return None
