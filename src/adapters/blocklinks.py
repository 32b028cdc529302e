"""vdsm's path layout for an active block volume, shared by the LVM and loop activators.

For volume ``<sd>/<img>/<vol>`` vdsm keeps two links:

* ``/run/vdsm/storage/<sd>/<img>/<vol>`` -> the block device (``/dev/<sd>/<vol>`` for LVM);
* ``/rhev/data-center/mnt/blockSD/<sd>/images/<img>`` -> ``/run/vdsm/storage/<sd>/<img>``;

and libvirt gets ``/rhev/data-center/mnt/blockSD/<sd>/images/<img>/<vol>``. Everything is
under a configurable ``root`` (``/`` on a real host) so tests can use a scratch folder.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from ovirt_cdrom.domain.errors import ImageFileNotFound, StorageError
from ovirt_cdrom.domain.model import DiskType, Media, VolumeRef

log = logging.getLogger(__name__)


class BlockLinks:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.run_dir = self.root / "run" / "vdsm" / "storage"
        self.mnt_dir = self.root / "rhev" / "data-center" / "mnt" / "blockSD"

    def run_image_dir(self, volume: VolumeRef) -> Path:
        return self.run_dir / volume.domain_id / volume.image_id

    def run_link(self, volume: VolumeRef) -> Path:
        return self.run_image_dir(volume) / volume.volume_id

    def image_link(self, volume: VolumeRef) -> Path:
        return self.mnt_dir / volume.domain_id / "images" / volume.image_id

    def media(self, volume: VolumeRef) -> Media:
        return Media(str(self.image_link(volume) / volume.volume_id), DiskType.BLOCK)

    def create(self, volume: VolumeRef, device: str) -> Media:
        """Point the volume's links at ``device``; replace links that point elsewhere."""
        try:
            _symlink(self.run_link(volume), device)
            _symlink(self.image_link(volume), str(self.run_image_dir(volume)))
        except OSError as e:
            raise StorageError(f"cannot link volume {volume} to {device}: {e}") from e
        return self.media(volume)

    def remove(self, volume: VolumeRef) -> None:
        """Remove the volume's link, and the image's folder and link once it is empty."""
        try:
            _unlink(self.run_link(volume))
            image_dir = self.run_image_dir(volume)
            if image_dir.is_dir() and not any(image_dir.iterdir()):
                image_dir.rmdir()
            if not image_dir.exists():
                _unlink(self.image_link(volume))
        except OSError as e:
            raise StorageError(f"cannot remove the links of volume {volume}: {e}") from e


def resolve_legacy_path(path: str) -> Media:
    """A legacy ISO path must exist: a regular file opens as a file, a device as a block."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ImageFileNotFound(f"{path}: {e.strerror}") from None
    if stat.S_ISBLK(mode):
        return Media(path, DiskType.BLOCK)
    if stat.S_ISREG(mode):
        return Media(path, DiskType.FILE)
    raise ImageFileNotFound(f"{path}: not a file or block device")


def _symlink(link: Path, target: str) -> None:
    if link.is_symlink() and os.readlink(link) == target:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    # Atomic against a concurrent reader: build aside, then rename over.
    tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    log.debug("linked %s -> %s", link, target)


def _unlink(link: Path) -> None:
    if link.is_symlink():
        link.unlink()
        log.debug("removed %s", link)
