"""vdsm's paths for a storage domain's volumes, shared by every adapter that meets them.

vdsm exposes volume ``<sd>/<img>/<vol>`` to libvirt at ``.../<sd>/images/<img>/<vol>``
under ``/rhev/data-center``: ``mnt/blockSD/`` for a block domain, the server's mount for a
file domain, or ``<pool>/`` (a link to the domain's mount, the form older engines sent).
So a tray path ending that way, its components UUIDs, is that volume whatever the mount or
the root it is under (D14); any other path is a file. A tray shows no pool.
"""

from __future__ import annotations

import re

from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    FileTray,
    Tray,
    VolumeRef,
    VolumeTray,
)

DATA_CENTER = "/rhev/data-center"
BLOCK_SD = f"{DATA_CENTER}/mnt/blockSD"
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_VOLUME_PATH = re.compile(rf"/(?P<sd>{_UUID})/images/(?P<img>{_UUID})/(?P<vol>{_UUID})$")
# The form older engines sent for ISOs on data domains: the pool is in it.
_POOL_PATH = re.compile(
    rf"^{DATA_CENTER}/(?P<pool>{_UUID})/(?P<sd>{_UUID})/images/(?P<img>{_UUID})"
    rf"/(?P<vol>{_UUID})$")
# A block domain's volume where vdsm exposes it without its pool: the form libvirt gets,
# vdsm's run link, the LV's device node.
_POOLLESS_BLOCK_PATHS = (
    re.compile(rf"^{BLOCK_SD}/(?P<sd>{_UUID})/images/(?P<img>{_UUID})/(?P<vol>{_UUID})$"),
    re.compile(rf"^/run/vdsm/storage/(?P<sd>{_UUID})/(?P<img>{_UUID})/(?P<vol>{_UUID})$"),
    re.compile(rf"^/dev/(?P<sd>{_UUID})/(?P<vol>{_UUID})$"),
)


def block_path(volume: VolumeRef) -> str:
    """The path vdsm gives libvirt for a volume of a block storage domain."""
    return f"{BLOCK_SD}/{volume.domain_id}/images/{volume.image_id}/{volume.volume_id}"


def tray_of(path: str | None) -> Tray:
    """What a tray holding ``path`` holds (None or empty: nothing)."""
    if not path:
        return EMPTY_TRAY
    match = _VOLUME_PATH.search(path)
    if match is None:
        return FileTray(path)
    return VolumeTray(match["sd"].lower(), match["img"].lower(), match["vol"].lower())


def pool_path_volume(path: str) -> VolumeRef | None:
    """The volume a ``/rhev/data-center/<pool>/<sd>/images/<img>/<vol>`` path names."""
    match = _POOL_PATH.match(path)
    if match is None:
        return None
    return VolumeRef(*(match[k].lower() for k in ("pool", "sd", "img", "vol")))


def poolless_block_volume(path: str) -> tuple[str, str] | None:
    """``(domain, volume)`` when ``path`` names a block domain's volume without its pool."""
    for pattern in _POOLLESS_BLOCK_PATHS:
        match = pattern.match(path)
        if match:
            return match["sd"].lower(), match["vol"].lower()
    return None
