"""vdsm's storage dispatcher in memory, over a :class:`MemoryHost`.

Product code, like the in-memory host it shares: it answers exactly as vdsm's dispatcher
does, so that the vdsm adapters can be checked without vdsm. It never raises (a
``BaseException`` such as a simulated crash aside), every answer carries ``status``
``{"code", "message"}``, ``prepareImage`` adds ``path``, ``info`` (``type`` ``block``, or
``file`` for ``file_domains``) and ``imgVolumesInfo``, and ``teardownImage`` adds nothing.

* Unknown pool: 309 StoragePoolUnknown; unknown domain: 358 StorageDomainDoesNotExist;
  a volume not in the image: 201 VolumeDoesNotExist (prepare), an image without volumes:
  268 ImageDoesNotExistInSD (teardown).
* Tearing down a volume a VM's tray holds: vdsm 4.50 swallows LVM's "in use" refusal and
  answers success with the LV still active (``swallow_in_use=True``, the default); with
  ``swallow_in_use=False`` it answers 552 CannotDeactivateLogicalVolume carrying LVM's
  "Logical volume ... in use." line, as a vdsm that stopped swallowing it would.
* :meth:`FakeVdsmStorage.refuse` scripts the next answers of a verb (a status vdsm would
  answer, before or after the verb took effect).

:class:`MemoryProbe` answers the adapter's host questions (is the LV active, does the
legacy ISO exist) from the same host.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ovirt_cdrom.adapters.memory.host import MemoryHost
from ovirt_cdrom.adapters.vdsm.storage import (
    CANNOT_DEACTIVATE_LV,
    IMAGE_DOES_NOT_EXIST_IN_SD,
    STORAGE_DOMAIN_DOES_NOT_EXIST,
    STORAGE_POOL_UNKNOWN,
    VOLUME_DOES_NOT_EXIST,
)
from ovirt_cdrom.domain.model import VolumeRef

log = logging.getLogger(__name__)


class _Status(Exception):
    """A vdsm storage exception inside the fake: becomes a status, never escapes."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _ok(**result: Any) -> dict[str, Any]:
    return {"status": {"code": 0, "message": "OK"}, **result}


def _failed(code: int, message: str) -> dict[str, Any]:
    return {"status": {"code": code, "message": message}}


def in_use_message(domain_id: str, volume_id: str) -> str:
    """vdsm's CannotDeactivateLogicalVolume text, carrying LVM's stderr line."""
    return (f"Cannot deactivate Logical Volume: ('error=[\"  Logical volume "
            f"{domain_id}/{volume_id} in use.\"]',)")


@dataclass(slots=True)
class _Refusal:
    verb: str
    code: int
    message: str
    after: bool  # the verb takes effect first
    times: int


class FakeVdsmStorage:
    """``prepareImage`` and ``teardownImage`` as vdsm's storage dispatcher answers them."""

    def __init__(self, host: MemoryHost, *, swallow_in_use: bool = True,
                 file_domains: frozenset[str] = frozenset()) -> None:
        self.host = host
        self.swallow_in_use = swallow_in_use
        # Domains on file storage (NFS): their volumes are prepared as files.
        self.file_domains = file_domains
        # Pools and domains the host is connected to, beyond those of the host's volumes.
        self._connected: set[tuple[str, str]] = set()
        self._refusals: list[_Refusal] = []

    def connect(self, pool_id: str, domain_id: str) -> None:
        """The host sees this storage domain of this pool (even with no volume on it)."""
        with self.host.lock:
            self._connected.add((pool_id, domain_id))

    def refuse(self, verb: str, code: int, message: str, *, after: bool = False,
               times: int = 1) -> None:
        """Answer the next ``times`` calls of ``verb`` with status ``code`` (``after``: the
        verb takes effect first, as when vdsm fails after activating the LV)."""
        with self.host.lock:
            self._refusals.append(_Refusal(verb, code, message, after, times))

    def prepareImage(self, sdUUID: str, spUUID: str, imgUUID: str,  # noqa: N802, N803
                     leafUUID: str) -> dict[str, Any]:  # noqa: N803
        with self.host.lock:
            refusal = self._take("prepareImage")
            if refusal is not None and not refusal.after:
                return _failed(refusal.code, refusal.message)
            try:
                volume = self._leaf(sdUUID, spUUID, imgUUID, leafUUID)
            except _Status as status:
                return _failed(status.code, status.message)
            self.host.volumes[volume] = True
            if refusal is not None:
                return _failed(refusal.code, refusal.message)
            if sdUUID in self.file_domains:
                kind = "file"
                path = (f"/rhev/data-center/mnt/nfs.example.com:_isos/{sdUUID}"
                        f"/images/{imgUUID}/{leafUUID}")
            else:
                kind, path = "block", self.host.media_of(volume).path
            return _ok(path=path, info={"type": kind, "path": path},
                       imgVolumesInfo=[{"domainID": sdUUID, "imageID": imgUUID,
                                        "volumeID": leafUUID, "path": path}])

    def teardownImage(self, sdUUID: str, spUUID: str,  # noqa: N802, N803
                      imgUUID: str) -> dict[str, Any]:  # noqa: N803
        with self.host.lock:
            refusal = self._take("teardownImage")
            if refusal is not None and not refusal.after:
                return _failed(refusal.code, refusal.message)
            try:
                for volume in self._image(sdUUID, spUUID, imgUUID):
                    if self.host.holders(volume):
                        self._in_use(volume)
                        continue
                    self.host.volumes[volume] = False
            except _Status as status:
                return _failed(status.code, status.message)
            if refusal is not None:
                return _failed(refusal.code, refusal.message)
            return _ok()

    # --- internals -------------------------------------------------------------------

    def _take(self, verb: str) -> _Refusal | None:
        for refusal in self._refusals:
            if refusal.verb == verb:
                refusal.times -= 1
                if refusal.times <= 0:
                    self._refusals.remove(refusal)
                return refusal
        return None

    def _in_use(self, volume: VolumeRef) -> None:
        message = in_use_message(volume.domain_id, volume.volume_id)
        if not self.swallow_in_use:
            raise _Status(CANNOT_DEACTIVATE_LV, message)
        # vdsm 4.50: "Cannot deactivate LV vg=... lv=... users=...", logged, not returned.
        log.warning("Cannot deactivate LV vg=%s lv=%s: %s", volume.domain_id,
                    volume.volume_id, message)

    def _check_pool_domain(self, sd: str, sp: str) -> None:
        known = {(v.pool_id, v.domain_id) for v in self.host.volumes} | self._connected
        if sp not in {pool for pool, _ in known}:
            raise _Status(STORAGE_POOL_UNKNOWN, f"Unknown pool id, pool not connected: ({sp!r},)")
        if (sp, sd) not in known:
            raise _Status(STORAGE_DOMAIN_DOES_NOT_EXIST,
                          f"Storage domain does not exist: ({sd!r},)")

    def _leaf(self, sd: str, sp: str, img: str, leaf: str) -> VolumeRef:
        self._check_pool_domain(sd, sp)
        volume = VolumeRef(sp, sd, img, leaf)
        if volume not in self.host.volumes:
            raise _Status(VOLUME_DOES_NOT_EXIST, f"Volume does not exist: ({leaf!r},)")
        return volume

    def _image(self, sd: str, sp: str, img: str) -> list[VolumeRef]:
        self._check_pool_domain(sd, sp)
        volumes = [v for v in self.host.volumes
                   if (v.pool_id, v.domain_id, v.image_id) == (sp, sd, img)]
        if not volumes:
            raise _Status(IMAGE_DOES_NOT_EXIST_IN_SD,
                          f"Image does not exist in domain: 'image={img}, domain={sd}'")
        return volumes


class MemoryProbe:
    """The host's answers the dispatcher cannot give (is the LV active, does the legacy
    ISO exist), from the in-memory host; on a real host they are ``stat`` calls."""

    def __init__(self, host: MemoryHost) -> None:
        self.host = host

    def volume_active(self, volume: VolumeRef) -> bool:
        with self.host.lock:
            return self.host.volumes.get(volume, False)

    def file_exists(self, path: str) -> bool:
        with self.host.lock:
            return self.host.file_exists(path)
