"""What the core needs from the VM's oVirt metadata: its CD-ROM entries."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

from ovirt_cdrom.domain.model import CdEntry, DriveEntries, DriveName, VmId


class MetadataRepository(abc.ABC):
    """Reads and writes a VM's CD-ROM entries, leaving every other element untouched.

    Entries are the design's logical entries in order: one normally, two during a change.
    However they are encoded, a write followed by a read returns what was written. A
    drive whose entries cannot be understood reads as ``Unreadable`` (its neighbours read
    on). Errors: ``NoSuchVM``, ``InvalidMetadata`` for a document that cannot be trusted
    as a whole, ``MetadataError`` for a failed read or write.
    """

    @abc.abstractmethod
    def read(self, vm: VmId, drive: DriveName) -> DriveEntries:
        """The drive's entries; empty when the metadata has none for it."""

    @abc.abstractmethod
    def read_all(self, vm: VmId,
                 drives: Sequence[DriveName]) -> Mapping[DriveName, DriveEntries]:
        """The entries of several drives with one read of the document."""

    @abc.abstractmethod
    def write(self, vm: VmId, drive: DriveName, entries: Sequence[CdEntry]) -> None:
        """Replace the drive's entries by ``entries`` (one write of the document)."""
