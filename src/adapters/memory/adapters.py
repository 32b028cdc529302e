"""The three ports over one :class:`MemoryHost`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ovirt_cdrom.adapters.memory.host import MemoryHost
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain.errors import (
    HypervisorError,
    ImageFileNotFound,
    VolumeInUse,
    VolumeNotFound,
)
from ovirt_cdrom.domain.model import DiskType, DriveName, Media, Tray, VmId, VolumeRef
from ovirt_cdrom.domain.state import DriveState, Unreadable
from ovirt_cdrom.ports import Hypervisor, MetadataRepository, VolumeActivator


class MemoryHypervisor(Hypervisor):
    def __init__(self, host: MemoryHost) -> None:
        self.host = host

    def vm_ids(self) -> list[VmId]:
        with self.host.lock:
            return list(self.host.vms)

    def is_migrating(self, vm: VmId) -> bool:
        with self.host.lock:
            return self.host.vm(vm).migrating

    def cdroms(self, vm: VmId) -> Mapping[DriveName, Tray]:
        with self.host.lock:
            return {name: d.tray for name, d in sorted(self.host.vm(vm).drives.items())}

    def cdrom(self, vm: VmId, drive: DriveName) -> Tray:
        with self.host.lock:
            return self.host.drive(vm, drive).tray

    def load(self, vm: VmId, drive: DriveName, media: Media) -> None:
        with self.host.lock:
            self.host.drive(vm, drive)
            if not self.host.can_open(media):
                # What QEMU says when libvirt hands it a device node that is gone.
                raise HypervisorError(f"cannot open {media.path}: No such file or directory")
            self.host.put(vm, drive, media)

    def eject(self, vm: VmId, drive: DriveName) -> None:
        with self.host.lock:
            self.host.put(vm, drive, None)


class MemoryVolumeActivator(VolumeActivator):
    def __init__(self, host: MemoryHost) -> None:
        self.host = host

    def prepare(self, volume: VolumeRef) -> Media:
        with self.host.lock:
            if volume not in self.host.volumes:
                raise VolumeNotFound(str(volume))
            self.host.volumes[volume] = True
            return self.host.media_of(volume)

    def teardown(self, volume: VolumeRef) -> None:
        with self.host.lock:
            if volume not in self.host.volumes:
                raise VolumeNotFound(str(volume))
            holders = self.host.holders(volume)
            if holders:
                raise VolumeInUse(
                    f"Logical volume {volume.domain_id}/{volume.volume_id} in use "
                    f"(held by {', '.join(map(str, holders))})")
            self.host.volumes[volume] = False

    def is_active(self, volume: VolumeRef) -> bool:
        with self.host.lock:
            return self.host.volumes.get(volume, False)

    def resolve_path(self, path: str) -> Media:
        with self.host.lock:
            if not self.host.file_exists(path):
                raise ImageFileNotFound(path)
            return Media(path, DiskType.FILE)


class MemoryMetadataRepository(MetadataRepository):
    """Each VM's block, written whole as libvirt's ``setMetadata`` writes it.

    A write reads every CD-ROM drive's state (the read of a read-modify-write), then
    writes them all back with the drive's replaced: two writers of one VM that interleave
    lose one's update, as on a real host. ``interleave``, if given, runs between the two
    (for tests that show the race).
    """

    def __init__(self, host: MemoryHost, encoding: Encoding = Encoding.VDSM_450,
                 interleave: Callable[[VmId, DriveName], None] | None = None) -> None:
        self.host = host
        self.encoding = encoding
        self.interleave = interleave

    def read(self, vm: VmId, drive: DriveName) -> DriveState:
        with self.host.lock:
            return self.host.vm(vm).metadata.read(drive)

    def read_all(self, vm: VmId, drives: Sequence[DriveName]) -> Mapping[DriveName, DriveState]:
        with self.host.lock:
            metadata = self.host.vm(vm).metadata
            return {d: metadata.read(d) for d in drives}

    def write(self, vm: VmId, drive: DriveName, state: DriveState) -> None:
        with self.host.lock:
            block = dict(self.host.states(vm))
        if self.interleave is not None:
            self.interleave(vm, drive)
        block[drive] = state
        with self.host.lock:
            metadata = self.host.vm(vm).metadata
            for name, seen in block.items():
                if name == drive or (metadata.read(name) != seen
                                     and not isinstance(seen, Unreadable)):
                    # Another writer's change to `name` meanwhile is lost: the stale copy
                    # goes back, as the whole block goes back in libvirt.
                    metadata.write(name, seen, self.encoding)
