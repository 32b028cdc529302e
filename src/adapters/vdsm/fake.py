"""vdsm's storage dispatcher in memory, over a :class:`MemoryHost`.

Product code, like the in-memory host it shares: the ``vdsm`` adapter profile runs on it
(acceptance scenarios, demos), so that what the engine sees through the vdsm adapters can
be checked without vdsm. It answers exactly as vdsm's dispatcher does: it never raises
(a ``BaseException`` such as a simulated crash aside), every answer carries ``status``
``{"code", "message"}``, ``prepareImage`` adds ``path``, ``info`` (``type`` ``block``,
or ``file`` for ``file_domains``) and ``imgVolumesInfo``, and ``teardownImage`` adds nothing.

* Unknown pool: 309 StoragePoolUnknown; unknown domain: 358 StorageDomainDoesNotExist;
  a volume not in the image: 201 VolumeDoesNotExist (prepare), an image without volumes:
  268 ImageDoesNotExistInSD (teardown).
* Tearing down a volume a VM's tray holds: vdsm 4.50 swallows LVM's "in use" refusal and
  answers success with the LV still active (``swallow_in_use=True``, the default); with
  ``swallow_in_use=False`` it answers 552 CannotDeactivateLogicalVolume carrying LVM's
  "Logical volume ... in use." line, as a vdsm that stopped swallowing it would.
* Failures scripted on the host (``host.script.fail("volumes.prepare", ...)``, also
  ``"volumes.teardown"``) become the status vdsm would answer: ``VolumeNotFound`` -> 201,
  ``VolumeInUse`` -> the "in use" behaviour above, any other ``StorageError`` -> 570
  CannotActivateLogicalVolumes (prepare) or 552 (teardown), anything else -> 100.

:class:`MemoryProbe` answers the adapter's host questions (is the LV active, does the
legacy ISO exist) from the same host.
"""

from __future__ import annotations

import logging
from typing import Any

from ovirt_cdrom.adapters.memory.host import MemoryHost
from ovirt_cdrom.adapters.vdsm.storage import (
    CANNOT_ACTIVATE_LVS,
    CANNOT_DEACTIVATE_LV,
    GENERAL_EXCEPTION,
    IMAGE_DOES_NOT_EXIST_IN_SD,
    STORAGE_DOMAIN_DOES_NOT_EXIST,
    STORAGE_POOL_UNKNOWN,
    VOLUME_DOES_NOT_EXIST,
)
from ovirt_cdrom.domain.errors import CdromError, StorageError, VolumeInUse, VolumeNotFound
from ovirt_cdrom.domain.model import VolumeRef

log = logging.getLogger(__name__)


class _Refusal(Exception):
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

    def connect(self, pool_id: str, domain_id: str) -> None:
        """The host sees this storage domain of this pool (even with no volume on it)."""
        with self.host.lock:
            self._connected.add((pool_id, domain_id))

    def prepareImage(self, sdUUID: str, spUUID: str, imgUUID: str,  # noqa: N802, N803
                     leafUUID: str) -> dict[str, Any]:  # noqa: N803
        try:
            with self.host.script.call("volumes.prepare"), self.host.lock:
                volume = self._leaf(sdUUID, spUUID, imgUUID, leafUUID)
                self.host.volumes[volume] = True
                if sdUUID in self.file_domains:
                    kind = "file"
                    path = (f"/rhev/data-center/mnt/nfs.example.com:_isos/{sdUUID}"
                            f"/images/{imgUUID}/{leafUUID}")
                else:
                    kind, path = "block", self.host.path_of(volume)
                return _ok(path=path, info={"type": kind, "path": path},
                           imgVolumesInfo=[{"domainID": sdUUID, "imageID": imgUUID,
                                            "volumeID": leafUUID, "path": path}])
        except _Refusal as refusal:
            return _failed(refusal.code, refusal.message)
        except CdromError as err:
            return self._scripted(err, CANNOT_ACTIVATE_LVS,
                                  "Cannot activate Logical Volumes", sdUUID, leafUUID)

    def teardownImage(self, sdUUID: str, spUUID: str,  # noqa: N802, N803
                      imgUUID: str) -> dict[str, Any]:  # noqa: N803
        try:
            with self.host.script.call("volumes.teardown"), self.host.lock:
                for volume in self._image(sdUUID, spUUID, imgUUID):
                    if self.host.holders(volume):
                        self._in_use(volume)
                        continue
                    self.host.volumes[volume] = False
                return _ok()
        except _Refusal as refusal:
            return _failed(refusal.code, refusal.message)
        except VolumeInUse:
            # A scripted "in use": LVM refused; the LV stays active.
            try:
                for volume in self._image(sdUUID, spUUID, imgUUID):
                    self._in_use(volume)
            except _Refusal as refusal:
                return _failed(refusal.code, refusal.message)
            return _ok()
        except CdromError as err:
            return self._scripted(err, CANNOT_DEACTIVATE_LV,
                                  "Cannot deactivate Logical Volume", sdUUID, imgUUID)

    # --- internals -------------------------------------------------------------------

    def _in_use(self, volume: VolumeRef) -> None:
        message = in_use_message(volume.domain_id, volume.volume_id)
        if not self.swallow_in_use:
            raise _Refusal(CANNOT_DEACTIVATE_LV, message)
        # vdsm 4.50: "Cannot deactivate LV vg=... lv=... users=...", logged, not returned.
        log.warning("Cannot deactivate LV vg=%s lv=%s: %s", volume.domain_id,
                    volume.volume_id, message)

    def _check_pool_domain(self, sd: str, sp: str) -> None:
        with self.host.lock:
            known = {(v.pool_id, v.domain_id) for v in self.host.volumes} | self._connected
        if sp not in {pool for pool, _ in known}:
            raise _Refusal(STORAGE_POOL_UNKNOWN,
                           f"Unknown pool id, pool not connected: ({sp!r},)")
        if (sp, sd) not in known:
            raise _Refusal(STORAGE_DOMAIN_DOES_NOT_EXIST,
                           f"Storage domain does not exist: ({sd!r},)")

    def _leaf(self, sd: str, sp: str, img: str, leaf: str) -> VolumeRef:
        self._check_pool_domain(sd, sp)
        volume = VolumeRef(sp, sd, img, leaf)
        if volume not in self.host.volumes:
            raise _Refusal(VOLUME_DOES_NOT_EXIST, f"Volume does not exist: ({leaf!r},)")
        return volume

    def _image(self, sd: str, sp: str, img: str) -> list[VolumeRef]:
        self._check_pool_domain(sd, sp)
        volumes = [v for v in self.host.volumes
                   if (v.pool_id, v.domain_id, v.image_id) == (sp, sd, img)]
        if not volumes:
            raise _Refusal(IMAGE_DOES_NOT_EXIST_IN_SD,
                           f"Image does not exist in domain: 'image={img}, domain={sd}'")
        return volumes

    @staticmethod
    def _scripted(err: CdromError, storage_code: int, storage_message: str,
                  sd: str, uuid: str) -> dict[str, Any]:
        if isinstance(err, VolumeNotFound):
            return _failed(VOLUME_DOES_NOT_EXIST, f"Volume does not exist: ({uuid!r},)")
        if isinstance(err, StorageError):
            return _failed(storage_code, f"{storage_message}: ({sd!r}, {str(err)!r})")
        return _failed(GENERAL_EXCEPTION, f"General Exception: ({str(err)!r},)")


class MemoryProbe:
    """The host's answers the dispatcher cannot give, from the in-memory host.

    ``file_exists`` passes through the host's script as ``volumes.resolve_path`` (it is
    that call's only host question); ``volume_active`` is not scripted: the adapter also
    asks it after each teardown, and on a real host it is a ``stat`` of ``/dev/<vg>/<lv>``.
    """

    def __init__(self, host: MemoryHost) -> None:
        self.host = host

    def volume_active(self, volume: VolumeRef) -> bool:
        with self.host.lock:
            return self.host.volumes.get(volume, False)

    def file_exists(self, path: str) -> bool:
        with self.host.script.call("volumes.resolve_path"), self.host.lock:
            return self.host.file_exists(path)
