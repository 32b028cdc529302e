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

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

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
from ovirt_cdrom.adapters.vdsm_api import VdsmApi
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

T = TypeVar("T")
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
    _crash_after: At | None = field(init=False, default=None)

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
        self.plan.after("*", self._crash_if_due)

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

    def only_files(self, paths: Iterable[str]) -> None:
        """Only these legacy ISO files exist on the host (by default every path does)."""
        with self.host.lock:
            self.host.files = set(paths)

    def migrating(self, vm: VmId, migrating: bool = True) -> None:
        """The VM starts (or stops) migrating to another host."""
        with self.host.lock:
            self.host.vm(vm).migrating = migrating

    def settle(self, *vms: VmId) -> None:
        """The set-up is done: remember the metadata that is not ours, to check it later
        (of ``vms`` only, if given: the others keep what was remembered of them)."""
        now = fingerprints(self.host)
        self.baseline.update({vm: now[vm] for vm in vms} if vms else now)

    # --- faults ----------------------------------------------------------------------

    # Each call adds to what is armed for the next step (arming twice keeps both).

    def fail(self, call: str, occurrence: int = 1, effect: Effect = "before") -> None:
        """The next step's ``occurrence``-th call of ``call`` fails (``after``: it took
        effect first, as a timeout does)."""
        self.fail_many({At(call, occurrence): effect})

    def fail_many(self, failures: Mapping[At, Effect]) -> None:
        self.plan.arm(failures={**self.plan.failures, **failures}, crash=self.plan.crash_at)

    def crash(self, call: str, occurrence: int = 1, effect: Effect = "before") -> None:
        """The process dies at the next step's ``occurrence``-th ``call``: just before it,
        or (``after``) once it took effect, before its caller sees the answer."""
        at = At(call, occurrence)
        if effect == "after":
            self._crash_after = at
        else:
            self.plan.arm(failures=self.plan.failures, crash=at)

    def _crash_if_due(self, name: str) -> None:
        # An after-hook: the call has done its work and is not yet in the trace.
        at = self._crash_after
        if at is None or name != at.call:
            return
        if sum(1 for c in self.plan.trace if c.call == name) + 1 == at.occurrence:
            self._crash_after = None
            raise SimulatedCrash(f"crash after {at}")

    def _end_step(self) -> None:
        self.plan.disarm()
        self._crash_after = None

    def before(self, call: str, hook: Callable[[str], None]) -> None:
        self.plan.before(call, hook)

    def after(self, call: str, hook: Callable[[str], None]) -> None:
        self.plan.after(call, hook)

    # --- acting ----------------------------------------------------------------------

    @property
    def service(self) -> CdromService:
        service: CdromService = self.app.core.service()
        return service

    @property
    def api(self) -> VdsmApi:
        """The vdsm verbs over :attr:`service` (to call from threads: not one step)."""
        api: VdsmApi = self.app.core.api()
        return api

    def step(self, run: Callable[[], T], restart_as: Encoding | None = None) -> T | None:
        """``run()`` as one step: faults armed before it apply to it (its calls counted from
        1, its trace alone in ``plan.trace``), then are disarmed. None if the process
        crashed: the agent is restarted, writing ``restart_as`` if given."""
        self.plan.begin_step()
        try:
            return run()
        except SimulatedCrash:
            self.restart(restart_as)
            return None
        finally:
            self._end_step()

    def change(self, vm: VmId | object, cdromspec: object, restart_as: Encoding | None = None
               ) -> dict[str, Any] | None:
        """``VM.changeCD`` as the engine calls it, as one step (:meth:`step`); None if the
        process crashed. A ``vm`` that is not a :class:`VmId` is sent as it is (bad input)."""
        vm_id = str(vm) if isinstance(vm, VmId) else vm
        return self.step(lambda: self.api.changeCD(vm_id, cdromspec), restart_as)

    def change_cd(self, vm: VmId, target: CdTarget, drive: DriveName = SDC) -> Outcome:
        """The service's ``change_cd`` as one step (typed errors raise)."""
        self.plan.begin_step()
        try:
            return self.service.change_cd(vm, drive, target)
        finally:
            self._end_step()

    def recover(self) -> RecoveryReport | None:
        """A fresh service (as at host start) recovers every VM; None if it crashed."""
        self.restart()
        return self.step(self.service.recover_all)

    def restart(self, encoding: Encoding | None = None) -> None:
        """The process died or the host restarted: a fresh service over the same host.

        ``encoding``: the restarted agent writes this metadata encoding (an upgrade from
        vdsm 4.50's, or back); both are always read."""
        if encoding is not None and encoding is not self.encoding:
            self.encoding = encoding
            ports: Ports = self.app.memory.ports()
            old = ports.metadata
            interleave = old.interleave if isinstance(old, MemoryMetadataRepository) else None
            self.app.memory.ports.override(providers.Object(ports._replace(
                metadata=MemoryMetadataRepository(self.host, encoding, interleave))))
            _reset(self.app.ports.providers["on"])  # the fault decorators around the ports
        _reset(self.app.core.api)
        _reset(self.app.core.service)
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

    def snapshot(self) -> str:
        """Everything on the host a call could change (trays, migrations, each VM's
        metadata as stored, byte for byte, which volumes are active), to compare."""
        with self.host.lock:
            return json.dumps({
                "vms": {str(vm.id): {
                    "migrating": vm.migrating,
                    "drives": {d.value: [m.source, m.disk_type.value]
                               for d, m in sorted(vm.drives.items())},
                    "metadata": vm.metadata.xml(),
                } for vm in self.host.vms.values()},
                "active": sorted(map(str, self.host.active_volumes())),
            }, sort_keys=True)

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


def _reset(provider: object) -> None:
    """Drop what a singleton provider made: it makes a fresh one when next asked."""
    assert isinstance(provider, providers.Singleton), provider
    provider.reset()
