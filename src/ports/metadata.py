"""What the core needs from the VM's oVirt metadata: its CD-ROM drives' states."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

from ovirt_cdrom.domain.model import DriveName, VmId
from ovirt_cdrom.domain.state import DriveState


class MetadataRepository(abc.ABC):
    """Reads and writes a VM's CD-ROM drive states, leaving every other element untouched.

    However a state is encoded, a write followed by a read returns it. A drive whose
    entries cannot be understood reads as ``Unreadable`` (its neighbours read on). A write
    replaces the VM's whole metadata block, as libvirt's does: writers of one VM must not
    interleave (the service writes one at a time). Errors: ``NoSuchVM``, ``InvalidMetadata``
    for a document that cannot be trusted as a whole, ``MetadataError`` for a failed read
    or write.
    """

    @abc.abstractmethod
    def read(self, vm: VmId, drive: DriveName) -> DriveState:
        """The drive's state; ``Empty`` when the metadata has nothing for it."""

    @abc.abstractmethod
    def read_all(self, vm: VmId, drives: Sequence[DriveName]) -> Mapping[DriveName, DriveState]:
        """The states of several drives with one read of the document."""

    @abc.abstractmethod
    def write(self, vm: VmId, drive: DriveName, state: DriveState) -> None:
        """Replace the drive's entries by ``state``'s (one write of the document)."""
