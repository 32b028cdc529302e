"""An in-memory host: VMs with CD-ROM drives, ISO volumes, and each VM's metadata block.

Product code, not a test double: the simulator runs on it and engine developers read its
state. The three in-memory adapters share one host, so the host behaves as a real one does
where it matters: tearing down a volume a VM's tray holds fails "in use" (as LVM refuses to
deactivate an open LV), loading an inactive volume fails (as QEMU cannot open a missing
device), and a metadata write replaces the VM's whole block (as libvirt's does). Faults are
injected around the adapters (``adapters/faults.py``), never inside them.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.adapters.vdsm_layout import block_path, tray_of
from ovirt_cdrom.domain.errors import InvalidMetadata, NoSuchDrive, NoSuchVM
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    DiskType,
    DriveKey,
    DriveName,
    Media,
    Tray,
    VmId,
    VolumeRef,
    VolumeTray,
)
from ovirt_cdrom.domain.state import DriveState, Unreadable


@dataclass(slots=True)
class MemoryDrive:
    """One CD-ROM drive: its bus, the path its tray holds (None: empty), and what that is
    (set together by :meth:`MemoryHost.put`)."""

    iface: str
    index: int
    source: str | None = None
    disk_type: DiskType = DiskType.FILE
    tray: Tray = EMPTY_TRAY


class MemoryMetadata:
    """One VM's ``<ovirt-vm:vm>`` block: the block as set up, and the drive states written
    since, in the order of their first write.

    The states are what a read answers; the block's XML is rendered from them only when
    someone looks (:meth:`xml`), through the codec, into a copy. Writing the XML at every
    write instead makes a change about 4 times slower (6,100 against 28,700 changes/s,
    ``ovirt-cdrom bench``), so the states are kept as states.
    """

    def __init__(self, block: etree._Element | None = None) -> None:
        self._block = metadata_xml.new_block() if block is None else block
        self._raw: str | bytes | None = None
        self._read: dict[DriveName, DriveState] = {}      # parsed from the block
        self._written: dict[DriveName, tuple[DriveState, Encoding]] = {}
        self._xml: str | None = None                       # the rendering, until a write

    @classmethod
    def raw(cls, text: str | bytes) -> MemoryMetadata:
        """A document stored unparsed, as libvirt holds it: parsed when first read, and
        refused (InvalidMetadata) at every read if hostile."""
        md = cls()
        md._raw = text
        return md

    def read(self, drive: DriveName) -> DriveState:
        written = self._written.get(drive)
        if written is not None:
            return written[0]
        if self._raw is not None:
            self._block, self._raw = metadata_xml.parse_block(self._raw), None
        state = self._read.get(drive)
        if state is None:
            state = self._read[drive] = metadata_xml.read(self._block, drive)
        return state

    def write(self, drive: DriveName, state: DriveState, encoding: Encoding) -> None:
        if isinstance(state, Unreadable):
            # As the codec refuses it (libvirt's adapter raises the same): stored, it would
            # make the block impossible to render at the next look.
            raise InvalidMetadata(f"{state} cannot be written")
        if self._raw is not None:
            self._block, self._raw = metadata_xml.parse_block(self._raw), None
        self._written[drive] = (state, encoding)
        self._xml = None

    def element(self) -> etree._Element:
        """The block as stored: a copy, the written states rendered into it."""
        if self._raw is not None:
            return metadata_xml.parse_block(self._raw)
        block = copy.deepcopy(self._block)
        for drive, (state, encoding) in self._written.items():
            metadata_xml.write(block, drive, state, encoding)
        return block

    def xml(self) -> str:
        """The block's XML as stored (a hostile raw document as it was given)."""
        if self._raw is not None:
            raw = self._raw
            return raw if isinstance(raw, str) else raw.decode(errors="replace")
        if self._xml is None:
            self._xml = metadata_xml.serialize(self.element())
        return self._xml


@dataclass(slots=True)
class MemoryVm:
    id: VmId
    drives: dict[DriveName, MemoryDrive] = field(default_factory=dict)
    migrating: bool = False
    metadata: MemoryMetadata = field(default_factory=MemoryMetadata)


class MemoryHost:
    """The state the in-memory adapters share. Look at it freely; change it by its methods.

    ``files`` are the legacy ISO paths that exist (None: every absolute path exists).
    """

    def __init__(self, files: Iterable[str] | None = None) -> None:
        self.lock = threading.RLock()
        self.vms: dict[VmId, MemoryVm] = {}
        self.volumes: dict[VolumeRef, bool] = {}  # volume -> active
        self.files: set[str] | None = None if files is None else set(files)
        # Which drives' trays hold each volume (what LVM's "in use" reflects), by tray, and
        # which volume a tray shows: so that a teardown or a load looks at no other VM.
        self._holders: dict[Tray, set[DriveKey]] = {}
        self._at: dict[Tray, VolumeRef] = {}

    # --- setting up ------------------------------------------------------------------

    def add_volume(self, volume: VolumeRef, active: bool = False) -> None:
        with self.lock:
            self.volumes[volume] = active
            self._at[_tray(volume)] = volume

    def add_vm(self, vm: VmId, migrating: bool = False,
               metadata: str | etree._Element | None = None) -> MemoryVm:
        """A running VM; ``metadata`` is its ``<ovirt-vm:vm>`` block (checked: hostile
        XML raises InvalidMetadata; see :meth:`set_raw_metadata` to store it as is)."""
        block = metadata if isinstance(metadata, etree._Element) \
            else metadata_xml.parse_block(metadata)
        with self.lock:
            self.vms[vm] = MemoryVm(vm, migrating=migrating, metadata=MemoryMetadata(block))
            return self.vms[vm]

    def set_raw_metadata(self, vm: VmId, text: str | bytes) -> None:
        """Store a metadata document unparsed, as libvirt holds it: it is parsed (and
        refused if hostile) only when an adapter reads it."""
        with self.lock:
            self.vm(vm).metadata = MemoryMetadata.raw(text)

    def add_drive(self, vm: VmId, iface: str, index: int, media: Media | None = None) -> DriveName:
        """A CD-ROM drive of ``vm`` holding ``media`` (None: an empty tray)."""
        drive = DriveName.from_iface_index(iface, index)
        with self.lock:
            self.vm(vm).drives[drive] = MemoryDrive(iface, index)
            self.put(vm, drive, media)
        return drive

    def put(self, vm: VmId, drive: DriveName, media: Media | None) -> None:
        """Put ``media`` in the drive's tray (None: empty it)."""
        with self.lock:
            memory_drive = self.drive(vm, drive)
            key = DriveKey(vm, drive)
            self._holders.get(memory_drive.tray, set()).discard(key)
            memory_drive.source = None if media is None else media.path
            memory_drive.disk_type = DiskType.FILE if media is None else media.disk_type
            memory_drive.tray = tray_of(memory_drive.source)
            if isinstance(memory_drive.tray, VolumeTray):
                self._holders.setdefault(memory_drive.tray, set()).add(key)

    def remove_vm(self, vm: VmId) -> None:
        """The VM is gone (shut down or destroyed): its trays hold nothing any more."""
        with self.lock:
            for drive in list(self.vm(vm).drives):
                self.put(vm, drive, None)
            del self.vms[vm]

    # --- looking ---------------------------------------------------------------------

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

    def media_of(self, volume: VolumeRef) -> Media:
        """Where a prepared volume is opened: vdsm's block path."""
        return Media(block_path(volume), DiskType.BLOCK)

    def holders(self, volume: VolumeRef) -> list[DriveKey]:
        """Which drives' trays hold the volume open."""
        with self.lock:
            return sorted(self._holders.get(_tray(volume), ()), key=str)

    def active_volumes(self) -> list[VolumeRef]:
        with self.lock:
            return [v for v, active in self.volumes.items() if active]

    def file_exists(self, path: str) -> bool:
        return self.files is None or path in self.files

    def volume_in(self, tray: Tray) -> VolumeRef | None:
        """The host's volume a tray holds (None: no volume, or one the host lacks)."""
        with self.lock:
            volume = self._at.get(tray)
            return volume if volume is not None and volume in self.volumes else None

    def can_open(self, media: Media) -> bool:
        """Whether QEMU could open ``media``: an active volume, or a file that exists."""
        volume = self.volume_in(tray_of(media.path))
        if volume is not None:
            return self.volumes[volume]
        return media.disk_type is DiskType.FILE and self.file_exists(media.path)

    def states(self, vm: VmId) -> Mapping[DriveName, DriveState]:
        """What the VM's metadata says of each of its CD-ROM drives."""
        with self.lock:
            memory_vm = self.vm(vm)
            return {d: memory_vm.metadata.read(d) for d in memory_vm.drives}


def _tray(volume: VolumeRef) -> Tray:
    return VolumeTray(volume.domain_id, volume.image_id, volume.volume_id)
