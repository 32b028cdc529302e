"""What the core needs from the hypervisor (libvirt): a VM's CD-ROM trays."""

from __future__ import annotations

import abc
from collections.abc import Mapping

from ovirt_cdrom.domain.model import DriveName, Media, Tray, VmId


class Hypervisor(abc.ABC):
    """The VMs running on this host and their CD-ROM drives.

    What a tray holds is a :data:`~ovirt_cdrom.domain.model.Tray`: empty, a storage domain's
    volume, or a file; the adapter tells them apart. Errors: ``NoSuchVM`` for an unknown VM,
    ``NoSuchDrive`` for a VM without that CD-ROM, ``HypervisorTimeout`` when a call may have
    taken effect without answering, and ``HypervisorError`` for any other refusal.
    """

    @abc.abstractmethod
    def vm_ids(self) -> list[VmId]:
        """Every VM running on this host."""

    @abc.abstractmethod
    def is_migrating(self, vm: VmId) -> bool:
        """Whether the VM is migrating (a media change must then be refused)."""

    @abc.abstractmethod
    def cdroms(self, vm: VmId) -> Mapping[DriveName, Tray]:
        """Every CD-ROM drive of the VM and what its tray holds."""

    @abc.abstractmethod
    def cdrom(self, vm: VmId, drive: DriveName) -> Tray:
        """What the drive's tray holds."""

    @abc.abstractmethod
    def load(self, vm: VmId, drive: DriveName, media: Media) -> None:
        """Put ``media`` in the tray, replacing what it held (forced, as vdsm does)."""

    @abc.abstractmethod
    def eject(self, vm: VmId, drive: DriveName) -> None:
        """Empty the tray (politely first, then forced, as vdsm does)."""
