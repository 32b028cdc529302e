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
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal

from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain.errors import CdromError, NoSuchDrive, NoSuchVM
from ovirt_cdrom.domain.model import (
    CdEntry,
    CdromSlot,
    DiskType,
    DriveEntries,
    DriveName,
    Media,
    VmId,
    VolumeRef,
    block_volume_path,
)

Effect = Literal["before", "after"]


def _volume_key(path: str | None) -> str | None:
    """``/<domain>/images/<image>/<volume>``: the only suffix a volume at ``path`` can have.

    ``VolumeRef.is_at(path)`` holds exactly when the volume's ``path_suffix`` is this key
    (its ids are UUIDs, without a slash), so the key indexes trays and volumes by path.
    """
    if path is None:
        return None
    parts = path.rsplit("/", 4)
    return "/" + "/".join(parts[1:]) if len(parts) == 5 else None


class MemoryDrive:
    """One CD-ROM drive. Setting ``source`` keeps the host's index of trays up to date."""

    __slots__ = ("_owner", "_source", "_trays", "disk_type", "iface", "index")

    def __init__(self, iface: str, index: int, source: str | None = None,
                 disk_type: DiskType = DiskType.FILE) -> None:
        self.iface = iface
        self.index = index
        self.disk_type = disk_type
        self._source = source
        # Set by MemoryHost.add_drive: which VM and name this is, and the host's index.
        self._owner: tuple[VmId, DriveName] | None = None
        self._trays: dict[str, set[MemoryDrive]] | None = None

    @property
    def source(self) -> str | None:
        return self._source

    @source.setter
    def source(self, path: str | None) -> None:
        trays = self._trays
        if trays is not None:
            old, new = _volume_key(self._source), _volume_key(path)
            if old != new:
                if old is not None:
                    trays.get(old, set()).discard(self)
                if new is not None:
                    trays.setdefault(new, set()).add(self)
        self._source = path

    def __repr__(self) -> str:
        return (f"MemoryDrive(iface={self.iface!r}, index={self.index!r}, "
                f"source={self._source!r}, disk_type={self.disk_type!r})")


class MemoryVm:
    """One VM: its CD-ROM drives and its ``<ovirt-vm:vm>`` metadata block.

    The block (``metadata``) is the truth. So that a change flow costs no XML, the
    in-memory adapters keep each drive's logical entries beside it (what
    ``metadata_xml.read_entries`` gave or a write put there) and write entries into the
    block lazily: taking ``metadata`` first applies every pending write, in order, then
    forgets the kept entries, since the caller may edit the element; the next read parses
    the block again. Edit the element right after taking it: a reference kept across
    adapter calls does not see writes made meanwhile until ``metadata`` is taken again.
    (Lazy because it pays: writing the XML at every write makes a change about 4 times
    slower, 6,100 instead of 28,700 changes/s in ``ovirt-cdrom bench``.)
    """

    __slots__ = ("_block", "_entries", "_pending", "drives", "id", "migrating", "raw_metadata")

    def __init__(self, id: VmId, drives: dict[DriveName, MemoryDrive] | None = None,
                 migrating: bool = False, metadata: etree._Element | None = None) -> None:
        self.id = id
        self.drives: dict[DriveName, MemoryDrive] = {} if drives is None else drives
        self.migrating = migrating
        self._block = metadata_xml.new_block() if metadata is None else metadata
        self._entries: dict[DriveName, DriveEntries] = {}
        # Writes not yet in the block, by drive in the order of their first write. Only
        # non-empty writes wait here; replaying the last one per drive in that order gives
        # the block the exact nodes the writes one by one would have.
        self._pending: dict[DriveName, tuple[tuple[CdEntry, ...], Encoding]] = {}
        # An unparsed document (see MemoryHost.set_raw_metadata): parsed, untrusted, on read.
        self.raw_metadata: str | bytes | None = None

    @property
    def metadata(self) -> etree._Element:
        self._flush()
        self._entries.clear()
        return self._block

    @metadata.setter
    def metadata(self, block: etree._Element) -> None:
        self._block = block
        self._entries.clear()
        self._pending.clear()

    @property
    def metadata_xml(self) -> str:
        if self.raw_metadata is not None:
            raw = self.raw_metadata
            return raw if isinstance(raw, str) else raw.decode(errors="replace")
        return metadata_xml.serialize(self.metadata)

    def block(self) -> etree._Element:
        """The metadata block, as a read from libvirt gives it: a raw document is parsed
        now (raising InvalidMetadata for a hostile one, at every read)."""
        self._adopt_raw()
        return self.metadata

    def _adopt_raw(self) -> None:
        if self.raw_metadata is not None:
            self.metadata = metadata_xml.parse_block(self.raw_metadata)
            self.raw_metadata = None

    def read_entries(self, drive: DriveName) -> DriveEntries:
        """The drive's entries, as ``metadata_xml.read_entries`` reads them from the block."""
        if self.raw_metadata is not None:
            self._adopt_raw()
        entries = self._entries.get(drive)
        if entries is None:
            entries = metadata_xml.read_entries(self._block, drive)
            self._entries[drive] = entries
        return entries

    def write_entries(self, drive: DriveName, entries: Sequence[CdEntry],
                      encoding: Encoding) -> None:
        """``metadata_xml.write_entries`` into the block, now or when someone looks."""
        if self.raw_metadata is not None:
            self._adopt_raw()
        entries = tuple(entries)
        if not entries and encoding is Encoding.DESIGN:
            # Written now: removing the drive's nodes changes where a later write puts them.
            self._flush()
            self._entries.pop(drive, None)
            metadata_xml.write_entries(self._block, drive, entries, encoding)
            return
        self._pending[drive] = (entries, encoding)
        # What read_entries gives back once the entries are in the block: the nested
        # encoding writes the slot the entries describe, and reads back its entries.
        self._entries[drive] = (entries if encoding is Encoding.DESIGN
                                else CdromSlot.from_entries(entries).entries())

    def cd_entries(self) -> dict[DriveName, DriveEntries]:
        """Every CD-ROM drive's entries: what a whole-block read tells of them."""
        return {drive: self.read_entries(drive) for drive in self.drives}

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, {}
            for drive, (entries, encoding) in pending.items():
                metadata_xml.write_entries(self._block, drive, entries, encoding)


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
    hook)`` runs ``hook`` at the start of each matching call, ``after(name, hook)`` once it
    has done its work, before its caller sees the answer (barriers for deterministic
    interleavings). Names are ``<port>.<method>``: ``hypervisor.load``, ``volumes.teardown``,
    ``metadata.write``...; ``"*"`` matches any call.
    """

    def __init__(self, lock: AbstractContextManager[object] | None = None) -> None:
        # ``lock``: the host's (reentrant) lock, which every adapter call takes anyway.
        self._unscripted = nullcontext() if lock is None else lock
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._hooks: list[tuple[str, Callable[[str], None]]] = []
        self._after: list[tuple[str, Callable[[str], None]]] = []
        self.calls: list[str] = []

    def fail(self, call: str, error: CdromError, effect: Effect = "before",
             skip: int = 0, times: int = 1) -> None:
        """Fail the matching call after ``skip`` matching calls, ``times`` times."""
        with self._lock:
            self._faults.append(_Fault(call, error, effect, skip, times))

    def before(self, call: str, hook: Callable[[str], None]) -> None:
        with self._lock:
            self._hooks.append((call, hook))

    def after(self, call: str, hook: Callable[[str], None]) -> None:
        with self._lock:
            self._after.append((call, hook))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hooks.clear()
            self._after.clear()
            self.calls.clear()

    def call(self, name: str) -> AbstractContextManager[object]:
        """Wrap one adapter call: hooks, then a scripted failure before or after it."""
        if not self._faults and not self._hooks and not self._after:
            # Nothing scripted (the common case): record the call and hand back the host's
            # lock, which the caller takes next anyway (no hook runs outside it).
            self.calls.append(name)
            return self._unscripted
        return self._scripted(name)

    @contextmanager
    def _scripted(self, name: str) -> Iterator[None]:
        with self._lock:
            self.calls.append(name)
            hooks = [h for c, h in self._hooks if c in (name, "*")]
            after = [h for c, h in self._after if c in (name, "*")]
            fault = self._take_fault(name)
        for hook in hooks:
            hook(name)
        if fault is not None and fault.effect == "before":
            raise fault.error
        yield
        for hook in after:
            hook(name)
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
        self.script = Script(self.lock)
        # Indexes by volume path suffix (see _volume_key): trays holding it, and the volume.
        self._trays: dict[str, set[MemoryDrive]] = {}
        self._volume_keys: dict[str, VolumeRef] = {}

    # --- setting up ------------------------------------------------------------------

    def add_volume(self, volume: VolumeRef, active: bool = False) -> None:
        with self.lock:
            self.volumes[volume] = active
            self._volume_keys.setdefault(volume.path_suffix, volume)

    def add_vm(self, vm: VmId, migrating: bool = False,
               metadata: str | etree._Element | None = None) -> MemoryVm:
        with self.lock:
            if isinstance(metadata, etree._Element):
                block = metadata
            else:
                block = metadata_xml.parse_block(metadata)
            self.vms[vm] = MemoryVm(vm, migrating=migrating, metadata=block)
            return self.vms[vm]

    def remove_vm(self, vm: VmId) -> None:
        """The VM is gone (shut down or destroyed): its trays hold nothing any more."""
        with self.lock:
            memory_vm = self.vm(vm)
            for drive in memory_vm.drives.values():
                drive.source = None
            del self.vms[vm]

    def set_raw_metadata(self, vm: VmId, text: str | bytes) -> None:
        """Store a metadata document unparsed, as libvirt holds it: it is parsed (and
        refused if hostile) only when an adapter reads it."""
        with self.lock:
            self.vm(vm).raw_metadata = text

    def add_drive(self, vm: VmId, iface: str, index: int, source: str | None = None,
                  disk_type: DiskType = DiskType.BLOCK) -> DriveName:
        drive = DriveName.from_iface_index(iface, index)
        with self.lock:
            memory_drive = MemoryDrive(iface, index, None, disk_type if source else DiskType.FILE)
            memory_drive._owner, memory_drive._trays = (vm, drive), self._trays
            memory_drive.source = source
            self.vm(vm).drives[drive] = memory_drive
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
        key = _volume_key(path)
        if key is None:
            return None
        known = self._volume_keys.get(key)
        if known is not None and known in self.volumes:
            return known
        for volume in self.volumes:  # added to the dict directly, or removed meanwhile
            if volume.is_at(path):
                self._volume_keys[key] = volume
                return volume
        return None

    def holders(self, volume: VolumeRef) -> list[tuple[VmId, DriveName]]:
        """Which trays hold the volume open (what LVM's "in use" reflects)."""
        with self.lock:
            found = []
            for tray in self._trays.get(volume.path_suffix, ()):
                assert tray._owner is not None
                vm, name = tray._owner
                memory_vm = self.vms.get(vm)
                if memory_vm is not None and memory_vm.drives.get(name) is tray:
                    found.append(tray._owner)
            if len(found) < 2:
                return found
            # Several: in the order of the VMs and their drives.
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
