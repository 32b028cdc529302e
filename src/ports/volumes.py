"""What the core needs from storage: activating and deactivating ISO volumes."""

from __future__ import annotations

import abc

from ovirt_cdrom.domain.model import Media, VolumeRef


class VolumeActivator(abc.ABC):
    """Activates ISO volumes so that a VM can open them.

    Errors: ``VolumeNotFound`` for a volume storage does not have, ``VolumeInUse`` when
    teardown is refused because someone (another VM) holds the volume open,
    ``ImageFileNotFound`` for a legacy path that does not exist, ``StorageError`` otherwise.
    """

    @abc.abstractmethod
    def prepare(self, volume: VolumeRef) -> Media:
        """Activate the volume (refresh it if active); return where and how to open it."""

    @abc.abstractmethod
    def teardown(self, volume: VolumeRef) -> None:
        """Deactivate the volume; tearing down an inactive volume succeeds."""

    @abc.abstractmethod
    def is_active(self, volume: VolumeRef) -> bool:
        """Whether the volume is active on this host."""

    @abc.abstractmethod
    def resolve_path(self, path: str) -> Media:
        """A legacy ISO path: check that it exists and tell how to open it."""
