"""In-memory adapters: a whole host in memory, for the simulator, demos and tests."""

from ovirt_cdrom.adapters.memory.adapters import (
    MemoryHypervisor,
    MemoryMetadataRepository,
    MemoryVolumeActivator,
)
from ovirt_cdrom.adapters.memory.host import MemoryDrive, MemoryHost, MemoryMetadata, MemoryVm

__all__ = [
    "MemoryDrive",
    "MemoryHost",
    "MemoryHypervisor",
    "MemoryMetadata",
    "MemoryMetadataRepository",
    "MemoryVm",
    "MemoryVolumeActivator",
]
