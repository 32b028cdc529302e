"""The three ports over one :class:`MemoryHost`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory.host import MemoryHost
from ovirt_cdrom.domain.errors import (
    HypervisorError,
    ImageFileNotFound,
    VolumeInUse,
    VolumeNotFound,
)
from ovirt_cdrom.domain.model import (
    CdEntry,
    DiskType,
    DriveEntries,
    DriveName,
    Media,
    Unreadable,
    VmId,
    VolumeRef,
)
from ovirt_cdrom.ports import Hypervisor, MetadataRepository, VolumeActivator


class MemoryHypervisor(Hypervisor):
    def __init__(self, host: MemoryHost) -> None:
        self.host = host

    def vm_ids(self) -> list[VmId]:
        with self.host.script.call("hypervisor.vm_ids"), self.host.lock:
            return list(self.host.vms)

    def is_migrating(self, vm: VmId) -> bool:
        with self.host.script.call("hypervisor.is_migrating"), self.host.lock:
            return self.host.vm(vm).migrating

    def cdroms(self, vm: VmId) -> Mapping[DriveName, str | None]:
        with self.host.script.call("hypervisor.cdroms"), self.host.lock:
            return {name: d.source for name, d in sorted(self.host.vm(vm).drives.items())}

    def cdrom(self, vm: VmId, drive: DriveName) -> str | None:
        with self.host.script.call("hypervisor.cdrom"), self.host.lock:
            return self.host.drive(vm, drive).source

    def load(self, vm: VmId, drive: DriveName, media: Media) -> None:
        with self.host.script.call("hypervisor.load"), self.host.lock:
            slot = self.host.drive(vm, drive)
            if not self.host.media_exists(media):
                # What QEMU says when libvirt hands it a device node that is gone.
                raise HypervisorError(f"cannot open {media.path}: No such file or directory")
            slot.source, slot.disk_type = media.path, media.disk_type

    def eject(self, vm: VmId, drive: DriveName) -> None:
        with self.host.script.call("hypervisor.eject"), self.host.lock:
            slot = self.host.drive(vm, drive)
            slot.source, slot.disk_type = None, DiskType.FILE


class MemoryVolumeActivator(VolumeActivator):
    def __init__(self, host: MemoryHost) -> None:
        self.host = host

    def prepare(self, volume: VolumeRef) -> Media:
        with self.host.script.call("volumes.prepare"), self.host.lock:
            if volume not in self.host.volumes:
                raise VolumeNotFound(str(volume))
            self.host.volumes[volume] = True
            return Media(self.host.path_of(volume), DiskType.BLOCK)

    def teardown(self, volume: VolumeRef) -> None:
        with self.host.script.call("volumes.teardown"), self.host.lock:
            if volume not in self.host.volumes:
                raise VolumeNotFound(str(volume))
            holders = self.host.holders(volume)
            if holders:
                raise VolumeInUse(
                    f"Logical volume {volume.domain_id}/{volume.volume_id} in use "
                    f"(held by {', '.join(f'{vm}/{d}' for vm, d in holders)})")
            self.host.volumes[volume] = False

    def is_active(self, volume: VolumeRef) -> bool:
        with self.host.script.call("volumes.is_active"), self.host.lock:
            return self.host.volumes.get(volume, False)

    def resolve_path(self, path: str) -> Media:
        with self.host.script.call("volumes.resolve_path"), self.host.lock:
            if not self.host.file_exists(path):
                raise ImageFileNotFound(path)
            return Media(path, DiskType.FILE)


class MemoryMetadataRepository(MetadataRepository):
    def __init__(self, host: MemoryHost,
                 encoding: metadata_xml.Encoding = metadata_xml.Encoding.DESIGN) -> None:
        self.host = host
        self.encoding = encoding

    def read(self, vm: VmId, drive: DriveName) -> DriveEntries:
        with self.host.script.call("metadata.read"), self.host.lock:
            return self.host.vm(vm).read_entries(drive)

    def read_all(self, vm: VmId,
                 drives: Sequence[DriveName]) -> Mapping[DriveName, DriveEntries]:
        with self.host.script.call("metadata.read_all"), self.host.lock:
            memory_vm = self.host.vm(vm)
            return {d: memory_vm.read_entries(d) for d in drives}

    def write(self, vm: VmId, drive: DriveName, entries: Sequence[CdEntry]) -> None:
        """Read the whole block, replace the drive's entries, write the whole block back:
        what libvirt's ``setMetadata`` offers. Two writers of one VM that interleave lose
        one's update, as on a real host; keeping them apart is the caller's business."""
        with self.host.lock:
            memory_vm = self.host.vm(vm)
            block = memory_vm.cd_entries()  # the read of the read-modify-write
        with self.host.script.call("metadata.write"), self.host.lock:
            memory_vm = self.host.vm(vm)
            now = memory_vm.cd_entries()
            for other, seen in block.items():
                if other != drive and now.get(other) != seen \
                        and not isinstance(seen, Unreadable):
                    # Another writer changed it meanwhile: the stale copy goes back.
                    memory_vm.write_entries(other, seen, self.encoding)
            memory_vm.write_entries(drive, entries, self.encoding)
