"""The vdsm-facing entry: ``VM.changeCD`` exactly as the engine sends it.

The request is vdsm's: a ``vmID`` and a ``cdromspec`` of ``{"iface", "index",
"drive_spec"}`` (engine 4.5; ``drive_spec: null`` ejects) or the legacy ``{"iface",
"index", "path"}`` (``path: ""`` ejects). The answer is vdsm's: ``{"vmList": {}}`` on
success, ``{"code", "message"}`` with vdsm's codes on failure. Everything is validated
before anything on the host is touched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ovirt_cdrom.domain.errors import (
    CdromError,
    InvalidParameter,
    UnsupportedOperation,
    internal_error,
)
from ovirt_cdrom.domain.model import (
    CdTarget,
    DriveName,
    Eject,
    LoadPath,
    LoadVolume,
    VmId,
    VolumeRef,
)
from ovirt_cdrom.service import CdromService

log = logging.getLogger(__name__)

SUCCESS: dict[str, Any] = {"vmList": {}}
_NETWORK_KEYS = ("protocol", "hosts")


@dataclass(frozen=True, slots=True)
class ChangeCdRequest:
    vm: VmId
    drive: DriveName
    target: CdTarget

    @classmethod
    def parse(cls, vm_id: object, cdromspec: object) -> ChangeCdRequest:
        """Validate vdsm's request; raise a typed error naming the field at fault."""
        vm = VmId.parse(vm_id)
        if not isinstance(cdromspec, Mapping):
            raise InvalidParameter("cdromspec",
                                   f"expected a mapping, got {type(cdromspec).__name__}")
        for key in ("iface", "index"):
            if key not in cdromspec:
                raise InvalidParameter(f"cdromspec.{key}", "missing")
        drive = DriveName.from_iface_index(cdromspec["iface"], cdromspec["index"])
        return cls(vm, drive, parse_target(cdromspec))


def parse_target(cdromspec: Mapping[str, Any]) -> CdTarget:
    if "drive_spec" in cdromspec:
        spec = cdromspec["drive_spec"]
        if spec is None or (isinstance(spec, Mapping) and not spec):
            return Eject()
        if not isinstance(spec, Mapping):
            raise InvalidParameter("drive_spec",
                                   f"expected a mapping or null, got {type(spec).__name__}")
        if spec.get("diskType") == "network" or any(k in spec for k in _NETWORK_KEYS):
            raise UnsupportedOperation("a network CD-ROM cannot be changed")
        device = spec.get("device", "cdrom")
        if device != "cdrom":
            raise InvalidParameter("drive_spec.device",
                                   f"expected 'cdrom', got {str(device)[:40]!r}")
        return LoadVolume(VolumeRef.parse(spec))
    if "path" in cdromspec:
        path = cdromspec["path"]
        if path == "":
            return Eject()
        return _route_path(LoadPath.parse(path))
    raise InvalidParameter("cdromspec", "needs 'drive_spec' (by volume) or 'path' (legacy)")


_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# A storage domain's volume in the form older engines sent for ISOs on data domains: the
# pool is in the path, so it is the volume's whole PDIV.
_POOL_PATH = re.compile(
    rf"^/rhev/data-center/(?P<pool>{_UUID})/(?P<sd>{_UUID})/images/(?P<img>{_UUID})"
    rf"/(?P<vol>{_UUID})$")
# A block domain's volume where vdsm exposes it: the form libvirt gets, vdsm's run link,
# the LV's device. None carries the pool.
_POOLLESS_PATHS = (
    re.compile(rf"^/rhev/data-center/mnt/blockSD/(?P<sd>{_UUID})/images/(?P<img>{_UUID})"
               rf"/(?P<vol>{_UUID})$"),
    re.compile(rf"^/run/vdsm/storage/(?P<sd>{_UUID})/(?P<img>{_UUID})/(?P<vol>{_UUID})$"),
    re.compile(rf"^/dev/(?P<sd>{_UUID})/(?P<vol>{_UUID})$"),
)


def _route_path(target: LoadPath) -> CdTarget:
    """A legacy path that names a storage domain's volume is that volume (DECISION D23).

    Loaded as a plain file, a volume would sit in the tray with nothing recording it: no
    marker while it loads, no entry naming it, no teardown when it leaves. With its pool in
    the path it is routed as the volume; without (a block volume where vdsm exposes it), no
    PDIV can be written for it, and it is refused before anything changes.
    """
    match = _POOL_PATH.match(target.path)
    if match:
        return LoadVolume(VolumeRef.parse({
            "poolID": match["pool"], "domainID": match["sd"], "imageID": match["img"],
            "volumeID": match["vol"]}, "path"))
    for pattern in _POOLLESS_PATHS:
        match = pattern.match(target.path)
        if match:
            raise UnsupportedOperation(
                f"path {target.path} names volume {match['vol'].lower()} of block storage "
                f"domain {match['sd'].lower()}: send it as drive_spec (its PDIV), so that "
                "it is activated, recorded and torn down")
    return target


def _shown(value: object) -> str:
    """A short, safe rendering of an untrusted value for the log (``str`` of a huge int
    raises ValueError, which must not escape the error path)."""
    if isinstance(value, str):
        return value[:64]
    return f"<{type(value).__name__}>"


class VdsmApi:
    """The verbs vdsm exposes for CD-ROMs, shaped as vdsm's API answers them."""

    def __init__(self, service: CdromService) -> None:
        self._service = service

    def changeCD(self, vmID: object, cdromspec: object) -> dict[str, Any]:  # noqa: N802, N803
        error = self.change_cd(vmID, cdromspec)
        return {"vmList": {}} if error is None else error.response()

    def change_cd(self, vmID: object, cdromspec: object) -> CdromError | None:  # noqa: N803
        """``changeCD`` answering the typed error (None on success), e.g. for the simulator."""
        try:
            request = ChangeCdRequest.parse(vmID, cdromspec)
            self._service.change_cd(request.vm, request.drive, request.target)
        except CdromError as err:
            log.warning("changeCD(%s) failed: %s", _shown(vmID), err)
            return err
        except Exception as exc:  # never let an untyped error reach the engine
            log.exception("changeCD(%s) failed unexpectedly", _shown(vmID))
            return internal_error(exc)
        return None

    def capabilities(self) -> dict[str, bool]:
        """What the host advertises to the engine for this feature."""
        return {"cd_change_pdiv": True}
