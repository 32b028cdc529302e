"""VolumeActivator over vdsm's storage verbs ``prepareImage`` and ``teardownImage``.

vdsm's storage dispatcher never raises: every verb answers a mapping whose ``status`` is
``{"code": int, "message": str}`` (0 is success), merged with the verb's result. vdsm's own
callers ignore the codes of ``teardownImage``; this adapter turns every non-zero status
into a typed error:

* ``201`` VolumeDoesNotExist and ``268`` ImageDoesNotExistInSD (the domain is reachable
  and does not have it) -> ``VolumeNotFound``; 309 StoragePoolUnknown and 358
  StorageDomainDoesNotExist stay ``StorageError``: vdsm answers them when it cannot see the
  storage, and the volume may well be active;
* a status whose message carries LVM's "Logical volume ... in use" line (vdsm reports it,
  when it does, as CannotDeactivateLogicalVolume 552) -> ``VolumeInUse``;
* any other code -> ``StorageError`` naming the verb, the code (with vdsm's name for it)
  and vdsm's message; ``fields["storage_code"]`` keeps the code.

"In use" needs a second look, because vdsm 4.50's ``teardownImage`` swallows LVM's
refusal: it logs "Cannot deactivate LV ..." and answers success, leaving the LV active.
So after a successful ``teardownImage`` the adapter asks the host probe whether the
volume is still active; if it is, someone holds it open and the adapter raises
``VolumeInUse`` (which the flows treat as "not ours to tear down", design D4).

vdsm has no storage verb that says whether a volume is active, and legacy ISO paths are
plain files, so :class:`HostProbe` answers both from the host: :class:`OsProbe` checks
``/dev/<domain>/<volume>`` (LVM's device link, present exactly while the LV is active) and
the legacy file. Volumes on file storage domains have no activation: the probe reports
them inactive, and their teardown (vdsm unlinks the image) is never needed for safety.

Thread-safe: the adapter keeps no state; vdsm's dispatcher takes its own locks.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ovirt_cdrom.adapters.vdsm_layout import tray_of
from ovirt_cdrom.domain.errors import (
    CdromError,
    ImageFileNotFound,
    StorageError,
    VolumeInUse,
    VolumeNotFound,
)
from ovirt_cdrom.domain.model import DiskType, Media, VolumeRef
from ovirt_cdrom.ports import VolumeActivator

log = logging.getLogger(__name__)

# vdsm's storage exception codes this adapter and its fake speak.
VOLUME_DOES_NOT_EXIST = 201
PREPARE_ILLEGAL_VOLUME = 227
IMAGE_DOES_NOT_EXIST_IN_SD = 268
STORAGE_POOL_UNKNOWN = 309
STORAGE_DOMAIN_DOES_NOT_EXIST = 358
CANNOT_DEACTIVATE_LV = 552
LV_REFRESH_ERROR = 556
CANNOT_ACTIVATE_LVS = 570
LVM_COMMAND_ERROR = 621
GENERAL_EXCEPTION = 100

CODE_NAMES: Mapping[int, str] = {
    GENERAL_EXCEPTION: "GeneralException",
    VOLUME_DOES_NOT_EXIST: "VolumeDoesNotExist",
    PREPARE_ILLEGAL_VOLUME: "prepareIllegalVolumeError",
    IMAGE_DOES_NOT_EXIST_IN_SD: "ImageDoesNotExistInSD",
    STORAGE_POOL_UNKNOWN: "StoragePoolUnknown",
    STORAGE_DOMAIN_DOES_NOT_EXIST: "StorageDomainDoesNotExist",
    CANNOT_DEACTIVATE_LV: "CannotDeactivateLogicalVolume",
    LV_REFRESH_ERROR: "LogicalVolumeRefreshError",
    CANNOT_ACTIVATE_LVS: "CannotActivateLogicalVolumes",
    LVM_COMMAND_ERROR: "LVMCommandError",
}

# LVM's refusal to deactivate an open LV, as vdsm matches it (one stderr line), but
# searched anywhere in the message since vdsm embeds stderr in its exception text.
IN_USE_RE = re.compile(r"Logical volume \S* in use\.")


class VdsmStorage(Protocol):
    """The two verbs of vdsm's storage dispatcher (``vdsm.storage.dispatcher``) we use."""

    def prepareImage(self, sdUUID: str, spUUID: str, imgUUID: str,  # noqa: N802, N803
                     leafUUID: str) -> Mapping[str, Any]: ...  # noqa: N803

    def teardownImage(self, sdUUID: str, spUUID: str,  # noqa: N802, N803
                      imgUUID: str) -> Mapping[str, Any]: ...  # noqa: N803


class HostProbe(Protocol):
    """What vdsm's dispatcher cannot tell: is a volume active, does a legacy ISO exist."""

    def volume_active(self, volume: VolumeRef) -> bool: ...

    def file_exists(self, path: str) -> bool: ...


class OsProbe:
    """The host itself: an LV is active while ``/dev/<vg>/<lv>`` exists."""

    def __init__(self, dev_root: str = "/dev") -> None:
        self.dev_root = dev_root

    def volume_active(self, volume: VolumeRef) -> bool:
        return os.path.exists(os.path.join(self.dev_root, volume.domain_id, volume.volume_id))

    def file_exists(self, path: str) -> bool:
        return os.path.isfile(path)


class VdsmVolumeActivator(VolumeActivator):
    """ISO volumes activated through vdsm's storage layer (its locks, links, bookkeeping)."""

    def __init__(self, storage: VdsmStorage | None, probe: HostProbe | None = None) -> None:
        # None: vdsm runs without storage (clientIF without irs): every volume operation
        # is then a StorageError, the legacy path route still works.
        self.storage = storage
        self.probe: HostProbe = probe if probe is not None else OsProbe()

    def prepare(self, volume: VolumeRef) -> Media:
        res = self._call("prepareImage", volume, self._dispatcher().prepareImage,
                         volume.domain_id, volume.pool_id, volume.image_id, volume.volume_id)
        path = res.get("path")
        info = res.get("info")
        if not isinstance(path, str) or not isinstance(info, Mapping):
            raise StorageError(f"prepareImage of {volume} answered without path or info",
                               storage_code=None)
        if not volume.in_tray(tray_of(path)):
            # The flows recognise a volume in the tray by this suffix (decision D14).
            raise StorageError(f"prepareImage of {volume} answered an unexpected path "
                               f"{path[:200]!r}", storage_code=None)
        kind = info.get("type")
        try:
            disk_type = DiskType(kind)
        except ValueError:
            raise StorageError(f"prepareImage of {volume}: unsupported disk type "
                               f"{str(kind)[:40]!r}", storage_code=None) from None
        log.debug("Prepared %s at %s (%s)", volume, path, disk_type.value)
        return Media(path, disk_type)

    def teardown(self, volume: VolumeRef) -> None:
        self._call("teardownImage", volume, self._dispatcher().teardownImage,
                   volume.domain_id, volume.pool_id, volume.image_id)
        if self._still_active(volume):
            # vdsm swallowed LVM's "in use" refusal and answered success.
            raise VolumeInUse(f"{volume} is still active after teardownImage: "
                              "another process holds it open")

    def is_active(self, volume: VolumeRef) -> bool:
        try:
            return self.probe.volume_active(volume)
        except OSError as err:
            raise StorageError(f"cannot tell whether {volume} is active: {err}") from err

    def resolve_path(self, path: str) -> Media:
        """A legacy ISO (an ISO domain's file): vdsm hands the path to libvirt as is."""
        try:
            exists = self.probe.file_exists(path)
        except OSError as err:
            raise StorageError(f"cannot check {path[:200]!r}: {err}") from err
        if not exists:
            raise ImageFileNotFound(path)
        return Media(path, DiskType.FILE)

    # --- internals -------------------------------------------------------------------

    def _still_active(self, volume: VolumeRef) -> bool:
        try:
            return self.probe.volume_active(volume)
        except OSError:
            log.exception("Cannot check whether %s is still active", volume)
            return False

    def _dispatcher(self) -> VdsmStorage:
        if self.storage is None:
            raise StorageError("vdsm's storage dispatcher is not available (no irs)",
                               storage_code=None)
        return self.storage

    def _call(self, verb: str, volume: VolumeRef, method: Callable[..., Mapping[str, Any]],
              *args: str) -> Mapping[str, Any]:
        """Call one dispatcher verb; answer its result or raise the typed error."""
        try:
            res = method(*args)
        except CdromError:
            raise
        except Exception as exc:  # the dispatcher never raises; a proxy in front of it may
            raise StorageError(f"{verb} of {volume} raised {type(exc).__name__}: {exc}",
                               storage_code=None) from exc
        code, message = _status(res, verb)
        if code == 0:
            return res
        raise status_error(verb, volume, code, message)


def _status(res: object, verb: str) -> tuple[int, str]:
    status = res.get("status") if isinstance(res, Mapping) else None
    code = status.get("code") if isinstance(status, Mapping) else None
    if not isinstance(code, int) or isinstance(code, bool):
        raise StorageError(f"{verb} answered without a status code: {str(res)[:200]}",
                           storage_code=None)
    assert isinstance(status, Mapping)
    message = status.get("message")
    return code, message if isinstance(message, str) else str(message)


def status_error(verb: str, volume: VolumeRef, code: int, message: str) -> StorageError:
    """The typed error for a non-zero status of ``verb`` on ``volume``."""
    name = CODE_NAMES.get(code, "storage error")
    reason = f"{verb} of {volume} failed: {name} ({code}): {message}"
    if code in (VOLUME_DOES_NOT_EXIST, IMAGE_DOES_NOT_EXIST_IN_SD):
        return VolumeNotFound(reason, storage_code=code)
    if IN_USE_RE.search(message):
        return VolumeInUse(reason, storage_code=code)
    return StorageError(reason, storage_code=code)
