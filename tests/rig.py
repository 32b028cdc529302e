"""The tests' one in-memory rig: a host, the product over it, faults by name, the promises.

Every in-memory test builds a :class:`Rig`: VMs whose metadata holds much that is not ours,
CD-ROM drives, ISO volumes, legacy ISO files; the product's own container wires the ports
with fault injection (``adapters/faults.py``), so a test arms faults and crashes by the call
they mean (``rig.fail("hypervisor.load")``) and puts barriers at named calls; the promises
are checked by the product's own checker (``domain/promises.py``).

``profile="vdsm"`` puts vdsm's storage adapter in front of the in-memory host: volumes go
through ``VdsmVolumeActivator`` and the in-memory dispatcher's status dicts.

Ids are UUIDs made from names (:func:`uid`), so no test copies a UUID literal.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dependency_injector import providers
from ovirt_cdrom.adapters.faults import At, Effect, FaultPlan, SimulatedCrash
from ovirt_cdrom.adapters.memory import (
    MemoryHost,
    MemoryHypervisor,
    MemoryMetadataRepository,
)
from ovirt_cdrom.adapters.memory.invariants import fingerprints, observe
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.adapters.vdsm.fake import FakeVdsmStorage, MemoryProbe
from ovirt_cdrom.adapters.vdsm.storage import VdsmVolumeActivator
from ovirt_cdrom.container import Application, build
from ovirt_cdrom.domain import promises
from ovirt_cdrom.domain.model import (
    CdTarget,
    DiskType,
    DriveName,
    Media,
    Tray,
    VmId,
    VolumeRef,
)
from ovirt_cdrom.domain.state import DriveState, settled
from ovirt_cdrom.ports import Ports
from ovirt_cdrom.service import CdromService, Outcome, RecoveryReport

Profile = Literal["memory", "vdsm"]
SUCCESS: dict[str, Any] = {"vmList": {}}
SDC = DriveName("sdc")
SDD = DriveName("sdd")


def uid(*name: object) -> str:
    """A UUID made from a name: the same name, the same UUID, in every test."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "ovirt-cdrom-test:" + "/".join(map(str, name))))


POOL = uid("pool")
DOMAIN = uid("block-domain")


def volume(name: object, pool: str = POOL, domain: str = DOMAIN) -> VolumeRef:
    """The ISO volume named ``name`` on the block domain."""
    return VolumeRef(pool, domain, uid("image", name), uid("volume", name))


def vm_id(name: object) -> VmId:
    return VmId(uid("vm", name))


def block_media(volume: VolumeRef) -> Media:
    from ovirt_cdrom.adapters.vdsm_layout import block_path  # noqa: PLC0415

    return Media(block_path(volume), DiskType.BLOCK)


def legacy_path(name: str) -> str:
    """An ISO file of an old ISO domain, by name."""
    return f"/rhev/data-center/mnt/isos.example.com:_iso/{uid('iso-domain')}/images/{name}.iso"


def unrelated_metadata(name: object = "vm") -> str:
    """A VM's ``<ovirt-vm:vm>`` block as vdsm writes it, with nothing of ours in it: typed
    values, custom properties (escaped text), a NIC, a system disk with its volume chain."""
    sd, img, vol = uid("sda-domain", name), uid("sda-image", name), uid("sda-volume", name)
    return f"""<ovirt-vm:vm xmlns:ovirt-vm="http://ovirt.org/vm/1.0">
    <ovirt-vm:balloonTarget type="int">4194304</ovirt-vm:balloonTarget>
    <ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
    <ovirt-vm:destroy_on_reboot type="bool">False</ovirt-vm:destroy_on_reboot>
    <ovirt-vm:memGuaranteedSize type="int">4096</ovirt-vm:memGuaranteedSize>
    <ovirt-vm:startTime type="float">1658237454.31</ovirt-vm:startTime>
    <ovirt-vm:resumeBehavior>auto_resume</ovirt-vm:resumeBehavior>
    <ovirt-vm:custom>
        <ovirt-vm:viodiskcache>writeback</ovirt-vm:viodiskcache>
        <ovirt-vm:sap_agent>true &amp; &lt;ok&gt;</ovirt-vm:sap_agent>
    </ovirt-vm:custom>
    <ovirt-vm:device mac_address="56:6f:1a:2b:00:01">
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


def spec(target: VolumeRef | str | None, iface: str = "sata", index: int | str = "2"
         ) -> dict[str, Any]:
    """vdsm's ``cdromspec`` as the engine sends it: a volume by PDIV, a legacy path (a
    string; ``""`` ejects), or eject (None)."""
    out: dict[str, Any] = {"iface": iface, "index": str(index)}
    if isinstance(target, str):
        out["path"] = target
    else:
        out["drive_spec"] = None if target is None else {"device": "cdrom", **target.as_dict()}
    return out


@dataclass
class Rig:
    """A host in memory and the product over it (see the module's docstring)."""

    profile: Profile = "memory"
    encoding: Encoding = Encoding.VDSM_450
    app: Application = field(init=False)
    host: MemoryHost = field(init=False)
    plan: FaultPlan = field(init=False)
    storage: FakeVdsmStorage | None = field(init=False, default=None)
    baseline: dict[VmId, str] = field(init=False, default_factory=dict)
    restarts: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.app = build({"adapters": "memory", "fault_injection": "on",
                          "metadata_encoding": self.encoding.value}, environ={})
        self.host = self.app.memory.host()
        if self.profile == "vdsm":
            self.storage = FakeVdsmStorage(self.host)
            self.app.memory.ports.override(providers.Object(Ports(
                MemoryHypervisor(self.host),
                VdsmVolumeActivator(self.storage, MemoryProbe(self.host)),
                MemoryMetadataRepository(self.host, self.encoding))))
        self.plan = self.app.fault_plan()

    # --- setting up ------------------------------------------------------------------

    def add_vm(self, vm: VmId, *, metadata: str | None = None, migrating: bool = False,
               drives: Iterable[tuple[str, int]] = (("sata", 2),)) -> VmId:
        """A running VM (its metadata: vdsm's values and nothing of ours, by default)
        with empty CD-ROM drives."""
        self.host.add_vm(vm, migrating=migrating,
                         metadata=unrelated_metadata(vm) if metadata is None else metadata)
        for iface, index in drives:
            self.host.add_drive(vm, iface, index)
        return vm

    def add_volume(self, volume: VolumeRef, active: bool = False) -> VolumeRef:
        self.host.add_volume(volume, active)
        return volume

    def hold(self, vm: VmId, held: VolumeRef | str | None, drive: DriveName = SDC,
             state: DriveState | None = None) -> None:
        """Put ``held`` in the tray (a volume, active; a legacy file; None: nothing), and
        metadata naming it (``state``: whatever the test needs instead)."""
        if isinstance(held, VolumeRef):
            self.host.add_volume(held, active=True)
            self.host.put(vm, drive, block_media(held))
        elif isinstance(held, str):
            self.host.put(vm, drive, Media(held, DiskType.FILE))
        else:
            self.host.put(vm, drive, None)
        if state is None:
            state = settled(held if isinstance(held, VolumeRef) else None)
        self.write(vm, drive, state)

    def write(self, vm: VmId, drive: DriveName, state: DriveState) -> None:
        """Make the VM's metadata say ``state`` for the drive (as if written by a flow)."""
        with self.host.lock:
            self.host.vm(vm).metadata.write(drive, state, self.encoding)

    def settle(self) -> None:
        """The set-up is done: remember the metadata that is not ours, to check it later."""
        self.baseline = fingerprints(self.host)

    # --- faults ----------------------------------------------------------------------

    def fail(self, call: str, occurrence: int = 1, effect: Effect = "before") -> None:
        """The next step's ``occurrence``-th call of ``call`` fails (``after``: it took
        effect first, as a timeout does)."""
        self.plan.arm(At(call, occurrence), effect)

    def fail_many(self, failures: Mapping[At, Effect]) -> None:
        self.plan.arm(failures=failures)

    def crash(self, call: str, occurrence: int = 1) -> None:
        """The process dies just before the next step's ``occurrence``-th ``call``."""
        self.plan.arm(crash=At(call, occurrence))

    def before(self, call: str, hook: Callable[[str], None]) -> None:
        self.plan.before(call, hook)

    def after(self, call: str, hook: Callable[[str], None]) -> None:
        self.plan.after(call, hook)

    # --- acting ----------------------------------------------------------------------

    @property
    def service(self) -> CdromService:
        service: CdromService = self.app.core.service()
        return service

    def change(self, vm: VmId | str, cdromspec: object) -> dict[str, Any] | None:
        """``VM.changeCD`` as the engine calls it, as one step (faults armed before it apply
        to it, then are disarmed); None if the process crashed."""
        self.plan.begin_step()
        try:
            answer: dict[str, Any] = self.app.core.api().changeCD(str(vm), cdromspec)
        except SimulatedCrash:
            self.restart()
            return None
        finally:
            self.plan.disarm()
        return answer

    def change_cd(self, vm: VmId, target: CdTarget, drive: DriveName = SDC) -> Outcome:
        """The service's ``change_cd`` as one step (typed errors raise)."""
        self.plan.begin_step()
        try:
            return self.service.change_cd(vm, drive, target)
        finally:
            self.plan.disarm()

    def recover(self) -> RecoveryReport | None:
        """A fresh service (as at host start) recovers every VM; None if it crashed."""
        self.restart()
        self.plan.begin_step()
        try:
            return self.service.recover_all()
        except SimulatedCrash:
            self.restart()
            return None
        finally:
            self.plan.disarm()

    def restart(self) -> None:
        """The process died or the host restarted: a fresh service over the same host."""
        for provider in (self.app.core.api, self.app.core.service):
            assert isinstance(provider, providers.Singleton)
            provider.reset()
        self.restarts += 1

    # --- looking ---------------------------------------------------------------------

    def tray(self, vm: VmId, drive: DriveName = SDC) -> Tray:
        with self.host.lock:
            return self.host.drive(vm, drive).tray

    def state(self, vm: VmId, drive: DriveName = SDC) -> DriveState:
        with self.host.lock:
            return self.host.vm(vm).metadata.read(drive)

    def active(self) -> set[VolumeRef]:
        return set(self.host.active_volumes())

    def calls(self) -> list[str]:
        """The port calls of the current step, by name."""
        return [c.call for c in self.plan.trace]

    def call_points(self) -> list[At]:
        """The current step's calls as the points a fault or crash may name, by call and
        occurrence (``rig.fail(p.call, p.occurrence)``): run a step once without faults,
        then once per point."""
        return [At(c.call, c.occurrence) for c in self.plan.trace]

    def observe(self) -> promises.Observation:
        return observe(self.host, self.baseline)

    def violations(self, settled: bool = True) -> list[str]:
        """What breaks the promises now (the product's own checker)."""
        return promises.violations(self.observe(), settled)
