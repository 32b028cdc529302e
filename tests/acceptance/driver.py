"""The acceptance driver: a host as the engine and an operator see it.

The steps in ``conftest.py`` only delegate here. The driver builds the real application
with ``ovirt_cdrom.container.build()`` over the in-memory host, calls the vdsm-facing
``VM.changeCD`` exactly as the engine sends it, scripts failures through the host's own
``script`` API, and simulates a crash with :class:`Crash` (a ``BaseException``: no
``except Exception`` and no flow compensation catches it, as when the process dies).
A restart is a *fresh* application over the same host, whose ``recover_all()`` runs as at
vdsm start.

Names in the scenarios ("vm1", "fedora", "sdc") map to UUIDs and volumes here.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.container import Application, build
from ovirt_cdrom.domain import errors
from ovirt_cdrom.domain.errors import CdromError
from ovirt_cdrom.domain.model import (
    CdEntry,
    DiskType,
    DriveName,
    EntryState,
    Unreadable,
    VmId,
    VolumeRef,
    block_volume_path,
)
from ovirt_cdrom.service import CdromService, RecoveryReport


class Crash(BaseException):
    """The process died at this point (deliberately not an ``Exception``)."""


POOL = "13345997-b94f-42dd-b8ef-a1392f65cebf"
DOMAIN = "88252cf6-381e-48f0-8795-a294a32c7149"
ISOS: dict[str, VolumeRef] = {
    "fedora": VolumeRef(POOL, DOMAIN, "89f05c7d-b961-4935-993f-514499024515",
                        "626a493f-5214-4337-b580-96a1ce702c2a"),
    "debian": VolumeRef(POOL, DOMAIN, "0b7c2f0e-3f7a-4b1e-8d8e-4a0a9c6f1d2e",
                        "5d2e9a41-7c3b-4f6a-9e1d-2b8c7a6f5e4d"),
    "ubuntu": VolumeRef(POOL, DOMAIN, "3e1f6b2a-9c4d-4e8f-a7b6-5d4c3b2a1f0e",
                        "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"),
    # In the storage domain's catalogue, but not on this host's storage.
    "missing": VolumeRef(POOL, DOMAIN, "c0ffee00-1111-4222-8333-444455556666",
                         "dead0000-beef-4000-8000-000000000001"),
}
VMS: dict[str, VmId] = {
    "vm1": VmId("6f4b1f2e-0c1d-4a8e-9b7a-3c2d1e0f9a8b"),
    "vm2": VmId("2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d"),
}
UNKNOWN_VM = "11111111-2222-4333-8444-555555555555"
IFACE, INDEX = "sata", 2
DRIVE = DriveName.from_iface_index(IFACE, INDEX)  # sdc
LEGACY_DIR = ("/rhev/data-center/mnt/isodomain.example.com:_iso/iso"
              "/11111111-1111-1111-1111-111111111111/images/11111111-1111-1111-1111-111111111111")

# What oVirt keeps in a running VM's metadata besides our CD-ROM entry (vdsm's shapes).
UNRELATED_METADATA = f"""\
<ovirt-vm:vm xmlns:ovirt-vm="http://ovirt.org/vm/1.0">
    <ovirt-vm:balloonTarget type="int">4194304</ovirt-vm:balloonTarget>
    <ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
    <ovirt-vm:custom>
        <ovirt-vm:viodiskcache>writeback</ovirt-vm:viodiskcache>
    </ovirt-vm:custom>
    <ovirt-vm:destroy_on_reboot type="bool">False</ovirt-vm:destroy_on_reboot>
    <ovirt-vm:memGuaranteedSize type="int">4096</ovirt-vm:memGuaranteedSize>
    <ovirt-vm:resumeBehavior>auto_resume</ovirt-vm:resumeBehavior>
    <ovirt-vm:startTime type="float">1658237454.31</ovirt-vm:startTime>
    <ovirt-vm:device mac_address="56:6f:1a:2b:00:01">
        <ovirt-vm:network>ovirtmgmt</ovirt-vm:network>
    </ovirt-vm:device>
    <ovirt-vm:device devtype="disk" name="sda">
        <ovirt-vm:domainID>{DOMAIN}</ovirt-vm:domainID>
        <ovirt-vm:guestName>/dev/sda</ovirt-vm:guestName>
        <ovirt-vm:imageID>e4d5c6b7-a8f9-4e0d-8c1b-2a3f4e5d6c7b</ovirt-vm:imageID>
        <ovirt-vm:poolID>{POOL}</ovirt-vm:poolID>
        <ovirt-vm:volumeID>f1e2d3c4-b5a6-4978-8f6e-5d4c3b2a1908</ovirt-vm:volumeID>
        <ovirt-vm:volumeChain>
            <ovirt-vm:volumeChainNode>
                <ovirt-vm:domainID>{DOMAIN}</ovirt-vm:domainID>
                <ovirt-vm:imageID>e4d5c6b7-a8f9-4e0d-8c1b-2a3f4e5d6c7b</ovirt-vm:imageID>
                <ovirt-vm:leaseOffset type="int">105906176</ovirt-vm:leaseOffset>
                <ovirt-vm:leasePath>/dev/{DOMAIN}/leases</ovirt-vm:leasePath>
                <ovirt-vm:path>/rhev/data-center/mnt/blockSD/{DOMAIN}/images/e4d5c6b7-a8f9-4e0d-8c1b-2a3f4e5d6c7b/f1e2d3c4-b5a6-4978-8f6e-5d4c3b2a1908</ovirt-vm:path>
                <ovirt-vm:volumeID>f1e2d3c4-b5a6-4978-8f6e-5d4c3b2a1908</ovirt-vm:volumeID>
            </ovirt-vm:volumeChainNode>
        </ovirt-vm:volumeChain>
    </ovirt-vm:device>
    <ovirt-vm:device devtype="disk" name="sdc"/>
</ovirt-vm:vm>
"""
EMPTY_CD_ELEMENT = '<ovirt-vm:device devtype="disk" name="sdc"/>'

_ERRORS: dict[str, type[CdromError]] = {
    "timeout": errors.HypervisorTimeout,
    "hypervisor error": errors.HypervisorError,
    "storage error": errors.StorageError,
    "metadata error": errors.MetadataError,
    "in use": errors.VolumeInUse,
}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one engine call returned, and the adapter calls it made."""

    answer: dict[str, Any] | None
    calls: tuple[str, ...]
    crashed: bool = False

    def count(self, call: str) -> int:
        return self.calls.count(call)


@dataclass(frozen=True, slots=True)
class Concurrent:
    """Two calls on one drive; ``overlapped``: the second got past the drive lock (it
    asked whether the VM migrates) while the first was still running."""

    first: Outcome
    second: Outcome | None
    overlapped: bool
    calls: tuple[str, ...]


@dataclass(slots=True)
class Observed:
    """The metadata as a hook saw it at the start of each matching adapter call."""

    call: str
    seen: list[str] = field(default_factory=list)
    elements: list[int] = field(default_factory=list)  # <device name="sdc"> elements


class CdromDriver:
    """One host (in memory) and the application running on it."""

    def __init__(self, encoding: str = "design") -> None:
        self.encoding = encoding
        self.app: Application = build({"adapters": "memory", "metadata_encoding": encoding},
                                      environ={})
        self.host: MemoryHost = self.app.memory.host()
        self._log = _CaseLog()

    # --- Given: the host -----------------------------------------------------------

    def add_isos(self, names: list[str]) -> None:
        for name in names:
            self.host.add_volume(ISOS[name])

    def add_vm(self, vm: str, metadata: str = UNRELATED_METADATA) -> None:
        vm_id = VMS[vm]
        self.host.add_vm(vm_id, metadata=metadata)
        self.host.add_drive(vm_id, IFACE, INDEX)

    def hold(self, vm: str, iso: str) -> None:
        """The VM holds ``iso``: put there by the engine's own call."""
        answer = self.api_call(VMS[vm].value, self.spec(iso))
        assert answer == {"vmList": {}}, answer

    def set_entries(self, vm: str, entries: str) -> None:
        """Write the drive's metadata entries as an interrupted operation left them."""
        self.app.memory.metadata().write(VMS[vm], DRIVE, parse_entries(entries))

    def set_tray(self, vm: str, tray: str) -> None:
        """Put ``tray`` (an ISO name or ``empty``) in the VM's drive, behind our back."""
        with self.host.lock:
            drive = self.host.drive(VMS[vm], DRIVE)
            if tray == "empty":
                drive.source, drive.disk_type = None, DiskType.FILE
            else:
                drive.source, drive.disk_type = block_volume_path(ISOS[tray]), DiskType.BLOCK

    def set_active(self, active: str) -> None:
        """Exactly these volumes are active on the host."""
        with self.host.lock:
            for volume in self.host.volumes:
                self.host.volumes[volume] = False
            for name in _names(active):
                self.host.volumes[ISOS[name]] = True

    def cd_element_is_empty(self, vm: str) -> bool:
        """Whether the CD-ROM entry is the design's empty ``<device name="sdc"/>``."""
        with self.host.lock:
            root = self.host.vm(VMS[vm]).metadata
            els = [el for el in root.iterchildren(f"{{{metadata_xml.NS}}}device")
                   if el.get("name") == DRIVE.value]
            return (len(els) == 1 and len(els[0]) == 0
                    and sorted(els[0].items()) == [("devtype", "disk"), ("name", DRIVE.value)])

    def cd_element_count(self, vm: str) -> int:
        with self.host.lock:
            root = self.host.vm(VMS[vm]).metadata
            return sum(1 for el in root.iterchildren(f"{{{metadata_xml.NS}}}device")
                       if el.get("name") == DRIVE.value)

    def markers(self, vm: str) -> list[str]:
        """Every pending-change marker in the CD-ROM entries, in either encoding."""
        with self.host.lock:
            root = self.host.vm(VMS[vm]).metadata
            found = []
            for el in root.iterchildren(f"{{{metadata_xml.NS}}}device"):
                if el.get("name") != DRIVE.value:
                    continue
                if el.get("state") is not None:
                    found.append(f"state={el.get('state')}")
                found += ["<change>" for _ in el.iter(f"{{{metadata_xml.NS}}}change")]
            return found

    def set_raw_cd_element(self, vm: str, xml: str) -> None:
        """Replace the VM's metadata document by one with ``xml`` as its CD-ROM element
        (e.g. what vdsm 4.50 left).

        ``{fedora}``/``{debian}`` in ``xml`` stand for that ISO's PDIV elements.
        """
        for name, volume in ISOS.items():
            xml = xml.replace(f"{{{name}}}", _pdiv_xml(volume))
        document = UNRELATED_METADATA.replace(EMPTY_CD_ELEMENT, xml.strip())
        assert document != UNRELATED_METADATA
        with self.host.lock:
            self.host.vm(VMS[vm]).metadata = metadata_xml.parse_block(document)

    def set_migrating(self, vm: str) -> None:
        with self.host.lock:
            self.host.vm(VMS[vm]).migrating = True

    def set_legacy_files(self, names: list[str]) -> None:
        """Only these legacy ISO files exist (the in-memory host's file table)."""
        with self.host.lock:
            self.host.files = {self.legacy_path(n) for n in names}

    def fail(self, call: str, kind: str, effect: str = "before", nth: int = 1,
             times: int = 1) -> None:
        """Script the ``nth`` next ``call`` to fail with an error of ``kind``."""
        error = _ERRORS[kind](f"scripted {kind} in {call}")
        self.host.script.fail(call, error, effect=_effect(effect), skip=nth - 1, times=times)

    def crash(self, call: str, effect: str, nth: int = 1) -> None:
        """Script the process to die at the ``nth`` next ``call``."""
        self.host.script.fail(call, Crash(f"crash at {call} #{nth} ({effect})"),  # type: ignore[arg-type]
                              effect=_effect(effect), skip=nth - 1)

    def observe(self, call: str, vm: str) -> Observed:
        """Record the VM's CD-ROM metadata at the start of each ``call``."""
        observed = Observed(call)

        def hook(_name: str) -> None:
            observed.seen.append(self.metadata(vm))
            observed.elements.append(self.cd_element_count(vm))

        self.host.script.before(call, hook)
        return observed

    def state(self) -> str:
        """Everything on the host a call could change, serialized for comparison."""
        with self.host.lock:
            return json.dumps({
                "vms": {str(vm.id): {
                    "migrating": vm.migrating,
                    "drives": {d.value: [m.source, m.disk_type.value]
                               for d, m in sorted(vm.drives.items())},
                    "metadata": vm.metadata_xml,
                } for vm in self.host.vms.values()},
                "active": sorted(str(v) for v, a in self.host.volumes.items() if a),
            }, sort_keys=True)

    # --- When: the engine, and the host's life ---------------------------------------

    def spec(self, iso: str | None) -> dict[str, Any]:
        """vdsm's cdromspec for ``iso`` by PDIV, as the engine sends it (None ejects)."""
        drive_spec = None if iso is None else {"device": "cdrom", **ISOS[iso].as_dict()}
        return {"iface": IFACE, "index": str(INDEX), "drive_spec": drive_spec}

    def legacy_spec(self, name: str | None) -> dict[str, Any]:
        path = "" if name is None else self.legacy_path(name)
        return {"iface": IFACE, "index": str(INDEX), "path": path}

    def volume_path_spec(self, iso: str, form: str) -> dict[str, Any]:
        """The legacy ``path`` naming ``iso``: the ``pool`` form older engines sent
        (``/rhev/data-center/<pool>/<sd>/images/<img>/<vol>``) or the ``block`` form
        libvirt gets (``/rhev/data-center/mnt/blockSD/<sd>/images/<img>/<vol>``)."""
        v = ISOS[iso]
        mount = {"pool": v.pool_id, "block": "mnt/blockSD"}[form]
        path = f"/rhev/data-center/{mount}/{v.domain_id}/images/{v.image_id}/{v.volume_id}"
        return {"iface": IFACE, "index": str(INDEX), "path": path}

    @staticmethod
    def legacy_path(name: str) -> str:
        return f"{LEGACY_DIR}/{name}.iso"

    def api_call(self, vm_id: object, cdromspec: object) -> dict[str, Any]:
        answer: dict[str, Any] = self.app.core.api().changeCD(vm_id, cdromspec)
        return answer

    def change_cd(self, vm: str, cdromspec: object, vm_id: object = _MISSING) -> Outcome:
        """Send ``VM.changeCD``; a scripted crash ends the call without an answer."""
        start = len(self.host.script.calls)
        target_vm = VMS[vm].value if vm_id is _MISSING else vm_id
        try:
            answer: dict[str, Any] | None = self.api_call(target_vm, cdromspec)
            crashed = False
        except Crash:
            answer, crashed = None, True
        return Outcome(answer, tuple(self.host.script.calls[start:]), crashed)

    def change_cd_mutated(self, vm: str, iso: str | None, field_path: str,
                          value: str) -> Outcome:
        """Send a request for ``iso`` (by PDIV; None: a legacy ISO by path) with one field
        replaced by a JSON value, or removed (``(missing)``)."""
        spec = self.spec(iso) if iso is not None else self.legacy_spec("rhel8")
        request: dict[str, Any] = {"vmID": VMS[vm].value, "cdromspec": spec}
        _mutate(request, field_path.split("."), value)
        return self.change_cd(vm, request.get("cdromspec"), vm_id=request.get("vmID"))

    def concurrent_change(self, vm: str, iso: str) -> Concurrent:
        """Two engine calls on one drive; the second starts while the first prepares."""
        start = len(self.host.script.calls)
        second_entered = threading.Event()
        first_done = threading.Event()
        results: dict[str, Outcome] = {}
        started = threading.Event()
        threads: list[threading.Thread] = []

        def second() -> None:
            results["second"] = self.change_cd(vm, self.spec(iso))

        def on_prepare(_name: str) -> None:
            if started.is_set():
                return
            started.set()
            threads.append(threading.Thread(target=second, daemon=True))
            threads[0].start()
            # If the second call is not serialized it reaches the hypervisor now.
            second_entered.wait(0.3)

        def on_migrating(_name: str) -> None:
            if started.is_set() and not first_done.is_set():
                second_entered.set()

        self.host.script.before("volumes.prepare", on_prepare)
        self.host.script.before("hypervisor.is_migrating", on_migrating)
        results["first"] = self.change_cd(vm, self.spec(iso))
        overlapped = second_entered.is_set()
        first_done.set()
        for thread in threads:
            thread.join(10)
        return Concurrent(results["first"], results.get("second"), overlapped,
                          tuple(self.host.script.calls[start:]))

    def change_during(self, vm: str, iso: str | None, at_call: str, other_vm: str,
                      other_iso: str | None) -> Concurrent:
        """Change ``vm`` to ``iso``; at its first ``at_call`` the engine's call for
        ``other_vm`` runs to completion (another drive: it does not wait)."""
        start = len(self.host.script.calls)
        others: list[Outcome] = []

        def hook(_name: str) -> None:
            if not others:
                others.append(Outcome(None, ()))  # guard: the other call passes here too
                others[0] = self.change_cd(other_vm, self.spec(other_iso))

        self.host.script.before(at_call, hook)
        first = self.change_cd(vm, self.spec(iso))
        return Concurrent(first, others[0] if others else None, True,
                          tuple(self.host.script.calls[start:]))

    def restart(self, encoding: str | None = None) -> Application:
        """The process restarts: a fresh application over the same host."""
        self.encoding = encoding or self.encoding
        fresh = build({"adapters": "memory", "metadata_encoding": self.encoding}, environ={})
        fresh.memory.host.override(self.host)
        self.app = fresh
        return fresh

    def heal(self) -> None:
        """Every scripted fault is gone: the storage and hypervisor work again."""
        self.host.script.clear()

    def use_encoding(self, encoding: str) -> None:
        self.restart(encoding)

    def restart_and_recover(self) -> RecoveryReport:
        """A restart (after a crash): a fresh application runs recover_all().

        Scripted faults belong to the host, not to the process: those not yet used stay.
        """
        fresh = self.restart()
        service: CdromService = fresh.core.service()
        with self._log.capture():
            return service.recover_all()

    # --- Then: what the engine, the VM and the host show --------------------------------

    def tray(self, vm: str) -> str:
        """What the VM shows in its CD-ROM (``virsh domblklist``): an ISO name or empty."""
        with self.host.lock:
            drive = self.host.drive(VMS[vm], DRIVE)
            source, disk_type = drive.source, drive.disk_type
        if source is None:
            return "empty"
        volume = self.host.volume_at(source)
        if volume is not None:
            # A block volume opened as a file is refused by QEMU.
            assert disk_type is DiskType.BLOCK, f"{source} loaded as {disk_type}"
            return _name_of(volume)
        if source.startswith(LEGACY_DIR + "/"):
            assert disk_type is DiskType.FILE, f"{source} loaded as {disk_type}"
            return "path " + source.rsplit("/", 1)[1].removesuffix(".iso")
        return source

    def metadata(self, vm: str) -> str:
        """The VM's CD-ROM entries: ``empty``, ``fedora``, ``ejecting:fedora, loading:debian``."""
        with self.host.lock:
            entries = metadata_xml.read_entries(self.host.vm(VMS[vm]).metadata, DRIVE)
        if isinstance(entries, Unreadable):
            return str(entries)
        return show_entries(entries)

    def active(self) -> list[str]:
        return sorted(_name_of(v) for v in self.host.active_volumes())

    def unrelated(self, vm: str) -> list[str]:
        """Every metadata element but the CD-ROM entry, canonical, whitespace ignored."""
        with self.host.lock:
            root = copy.deepcopy(self.host.vm(VMS[vm]).metadata)
        return _unrelated(root)

    def expected_unrelated(self) -> list[str]:
        return _unrelated(metadata_xml.parse_block(UNRELATED_METADATA))

    def broken_promises(self) -> list[str]:
        """Nothing leaks, nothing lies: checked on every VM and volume of the host."""
        found = []
        held = set()
        with self.host.lock:
            for vm in self.host.vms.values():
                for name, drive in vm.drives.items():
                    volume = self.host.volume_at(drive.source)
                    entries = metadata_xml.read_entries(vm.metadata, name)
                    where = f"{vm.id}/{name}"
                    if isinstance(entries, Unreadable):
                        found.append(f"{where}: unreadable metadata: {entries}")
                        continue
                    if volume is not None:
                        held.add(volume)
                        if not self.host.volumes[volume]:
                            found.append(f"{where} holds inactive {_name_of(volume)}")
                    if any(e.state is not None for e in entries):
                        found.append(f"{where}: marker left: {show_entries(entries)}")
                    names = [e.volume for e in entries if e.volume is not None]
                    if names != ([volume] if volume else []):
                        found.append(f"{where} holds {drive.source or 'nothing'} but "
                                     f"metadata says {show_entries(entries)}")
            for volume, active in self.host.volumes.items():
                if active and volume not in held:
                    found.append(f"{_name_of(volume)} active but no VM holds it")
        return found

    def recovery_cases(self) -> list[str]:
        return list(self._log.cases)


# --- helpers -------------------------------------------------------------------------------


def parse_entries(text: str) -> tuple[CdEntry, ...]:
    """``empty`` | ``fedora`` | ``loading:fedora`` | ``ejecting:fedora, loading:debian``."""
    if text.strip() == "empty":
        return (CdEntry(),)
    entries = []
    for part in _names(text):
        state, _, iso = part.rpartition(":")
        entries.append(CdEntry(EntryState(state) if state else None, ISOS[iso]))
    return tuple(entries)


def show_entries(entries: tuple[CdEntry, ...]) -> str:
    if not entries or entries == (CdEntry(),):
        return "empty"
    return ", ".join((f"{e.state.value}:" if e.state else "")
                     + (_name_of(e.volume) if e.volume else "nothing") for e in entries)


def _names(text: str) -> list[str]:
    text = text.strip()
    if text in ("none", "empty", ""):
        return []
    return [p.strip() for p in re.split(r",|\band\b", text) if p.strip()]


def _name_of(volume: VolumeRef) -> str:
    return next((n for n, v in ISOS.items() if v == volume), str(volume))


def _pdiv_xml(volume: VolumeRef) -> str:
    return "".join(f"<ovirt-vm:{k}>{v}</ovirt-vm:{k}>" for k, v in sorted(volume.as_dict().items()))


def _effect(effect: str) -> Any:
    if effect not in ("before", "after"):
        raise ValueError(f"effect must be before or after, got {effect!r}")
    return effect


def _unrelated(root: etree._Element) -> list[str]:
    out = []
    for el in root:
        if el.tag == f"{{{metadata_xml.NS}}}device" and el.get("name") == DRIVE.value:
            continue
        bare = copy.deepcopy(el)
        for node in bare.iter():
            node.tail = None
            if len(node) and node.text is not None and not node.text.strip():
                node.text = None
        out.append(etree.tostring(bare, method="c14n").decode())
    return out


def _mutate(request: dict[str, Any], path: list[str], value: str) -> None:
    parent: Any = request
    for key in path[:-1]:
        parent = parent[key]
    if value == "(missing)":
        del parent[path[-1]]
    else:
        parent[path[-1]] = json.loads(value)


class _CaseLog(logging.Handler):
    """Which design case recovery applied, read from the flow's own log line."""

    _RE = re.compile(r": case (\S+):")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.cases: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = self._RE.search(record.getMessage())
        if match:
            self.cases.append(match.group(1))

    @contextmanager
    def capture(self) -> Iterator[None]:
        self.cases.clear()
        logger = logging.getLogger("ovirt_cdrom.domain.flows")
        old = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(self)
            logger.setLevel(old)
