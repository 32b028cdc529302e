"""An in-memory host: VMs with CD-ROM drives, ISO volumes, and each VM's metadata block.

Product code, not a test double: the simulator runs on it and engine developers read its
state. The three in-memory adapters share one host, so the host behaves as a real one
does where it matters: tearing down a volume a VM's tray holds fails "in use" (as LVM
refuses to deactivate an open LV), and loading an inactive volume fails (as QEMU cannot
open a missing device).

Failures and pauses are scripted through :class:`Script` (``host.script``), never by
monkeypatching: every adapter call passes through ``script.call(...)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.domain.errors import CdromError, NoSuchDrive, NoSuchVM
from ovirt_cdrom.domain.model import (
    DiskType,
    DriveName,
    Media,
    VmId,
    VolumeRef,
    block_volume_path,
)

Effect = Literal["before", "after"]


@dataclass(slots=True)
class MemoryDrive:
    iface: str
    index: int
    source: str | None = None
    disk_type: DiskType = DiskType.FILE


@dataclass(slots=True)
class MemoryVm:
    id: VmId
    drives: dict[DriveName, MemoryDrive] = field(default_factory=dict)
    migrating: bool = False
    metadata: etree._Element = field(default_factory=metadata_xml.new_block)
    # An unparsed document (see MemoryHost.set_raw_metadata): parsed, untrusted, on read.
    raw_metadata: str | bytes | None = None

    @property
    def metadata_xml(self) -> str:
        if self.raw_metadata is not None:
            raw = self.raw_metadata
            return raw if isinstance(raw, str) else raw.decode(errors="replace")
        return metadata_xml.serialize(self.metadata)

    def block(self) -> etree._Element:
        """The metadata block, as a read from libvirt gives it: a raw document is parsed
        now (raising InvalidMetadata for a hostile one, at every read)."""
        if self.raw_metadata is not None:
            self.metadata = metadata_xml.parse_block(self.raw_metadata)
            self.raw_metadata = None
        return self.metadata


@dataclass(slots=True)
class _Fault:
    call: str
    error: CdromError
    effect: Effect
    skip: int
    times: int


class Script:
    """Scripted behaviour of the in-memory adapters.

    ``fail("volumes.prepare", StorageError("boom"))`` makes the next matching call raise
    (``effect="after"``: the call takes effect first, as a timeout does). ``before(name,
    hook)`` runs ``hook`` at the start of each matching call (a barrier for deterministic
    interleavings). Names are ``<port>.<method>``: ``hypervisor.load``, ``volumes.teardown``,
    ``metadata.write``...; ``"*"`` matches any call.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._hooks: list[tuple[str, Callable[[str], None]]] = []
        self.calls: list[str] = []

    def fail(self, call: str, error: CdromError, effect: Effect = "before",
             skip: int = 0, times: int = 1) -> None:
        """Fail the matching call after ``skip`` matching calls, ``times`` times."""
        with self._lock:
            self._faults.append(_Fault(call, error, effect, skip, times))

    def before(self, call: str, hook: Callable[[str], None]) -> None:
        with self._lock:
            self._hooks.append((call, hook))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hooks.clear()
            self.calls.clear()

    @contextmanager
    def call(self, name: str) -> Iterator[None]:
        """Wrap one adapter call: hooks, then a scripted failure before or after it."""
        with self._lock:
            self.calls.append(name)
            hooks = [h for c, h in self._hooks if c in (name, "*")]
            fault = self._take_fault(name)
        for hook in hooks:
            hook(name)
        if fault is not None and fault.effect == "before":
            raise fault.error
        yield
        if fault is not None:
            raise fault.error

    def _take_fault(self, name: str) -> _Fault | None:
        for fault in self._faults:
            if fault.call not in (name, "*"):
                continue
            if fault.skip:
                fault.skip -= 1
                return None
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            return fault
        return None


class MemoryHost:
    """The state the in-memory adapters share. Inspect it freely; mutate it via methods."""

    def __init__(self, files: set[str] | None = None) -> None:
        self.lock = threading.RLock()
        self.vms: dict[VmId, MemoryVm] = {}
        self.volumes: dict[VolumeRef, bool] = {}  # volume -> active
        # Legacy ISO files that exist; None: every absolute path exists.
        self.files = files
        self.script = Script()

    # --- setting up ------------------------------------------------------------------

    def add_volume(self, volume: VolumeRef, active: bool = False) -> None:
        with self.lock:
            self.volumes[volume] = active

    def add_vm(self, vm: VmId, migrating: bool = False,
               metadata: str | etree._Element | None = None) -> MemoryVm:
        with self.lock:
            if isinstance(metadata, etree._Element):
                block = metadata
            else:
                block = metadata_xml.parse_block(metadata)
            self.vms[vm] = MemoryVm(vm, migrating=migrating, metadata=block)
            return self.vms[vm]

    def set_raw_metadata(self, vm: VmId, text: str | bytes) -> None:
        """Store a metadata document unparsed, as libvirt holds it: it is parsed (and
        refused if hostile) only when an adapter reads it."""
        with self.lock:
            self.vm(vm).raw_metadata = text

    def add_drive(self, vm: VmId, iface: str, index: int, source: str | None = None,
                  disk_type: DiskType = DiskType.BLOCK) -> DriveName:
        drive = DriveName.from_iface_index(iface, index)
        with self.lock:
            self.vm(vm).drives[drive] = MemoryDrive(
                iface, index, source, disk_type if source else DiskType.FILE)
        return drive

    # --- looking --------------------------------------------------------------------

    def vm(self, vm: VmId) -> MemoryVm:
        try:
            return self.vms[vm]
        except KeyError:
            raise NoSuchVM(str(vm)) from None

    def drive(self, vm: VmId, drive: DriveName) -> MemoryDrive:
        try:
            return self.vm(vm).drives[drive]
        except KeyError:
            raise NoSuchDrive(vm, drive) from None

    def path_of(self, volume: VolumeRef) -> str:
        return block_volume_path(volume)

    def volume_at(self, path: str | None) -> VolumeRef | None:
        if path is None:
            return None
        for volume in self.volumes:
            if volume.is_at(path):
                return volume
        return None

    def holders(self, volume: VolumeRef) -> list[tuple[VmId, DriveName]]:
        """Which trays hold the volume open (what LVM's "in use" reflects)."""
        with self.lock:
            return [(vm.id, name) for vm in self.vms.values()
                    for name, d in vm.drives.items() if volume.is_at(d.source)]

    def active_volumes(self) -> list[VolumeRef]:
        with self.lock:
            return [v for v, active in self.volumes.items() if active]

    def file_exists(self, path: str) -> bool:
        return self.files is None or path in self.files

    def media_exists(self, media: Media) -> bool:
        volume = self.volume_at(media.path)
        if volume is not None:
            return self.volumes[volume]
        return media.disk_type is DiskType.FILE and self.file_exists(media.path)
