"""The vdsm-facing entry: ``VM.changeCD`` exactly as the engine sends it.

The request is vdsm's: a ``vmID`` and a ``cdromspec`` of ``{"iface", "index",
"drive_spec"}`` (engine 4.5; ``drive_spec: null`` ejects) or the legacy ``{"iface",
"index", "path"}`` (``path: ""`` ejects). The answer is vdsm's: ``{"vmList": {}}`` on
success, ``{"code", "message"}`` with vdsm's codes on failure. Everything is validated
before anything on the host is touched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ovirt_cdrom.adapters import vdsm_layout
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


def _route_path(target: LoadPath) -> CdTarget:
    """A legacy path that names a storage domain's volume is that volume (DECISION D23).

    Loaded as a plain file, a volume would sit in the tray with nothing recording it: no
    marker while it loads, no entry naming it, no teardown when it leaves. With its pool in
    the path it is routed as the volume; without (a block volume where vdsm exposes it), no
    PDIV can be written for it, and it is refused before anything changes.
    """
    volume = vdsm_layout.pool_path_volume(target.path)
    if volume is not None:
        return LoadVolume(volume)
    poolless = vdsm_layout.poolless_block_volume(target.path)
    if poolless is not None:
        domain, volume_id = poolless
        raise UnsupportedOperation(
            f"path {target.path} names volume {volume_id} of block storage domain "
            f"{domain}: send it as drive_spec (its PDIV), so that it is activated, "
            "recorded and torn down")
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
        """``{"vmList": {}}``, or vdsm's ``{"code", "message"}`` for the typed error."""
        try:
            request = ChangeCdRequest.parse(vmID, cdromspec)
            self._service.change_cd(request.vm, request.drive, request.target)
        except CdromError as err:
            log.warning("changeCD(%s) failed: %s", _shown(vmID), err)
            return err.response()
        except Exception as exc:  # never let an untyped error reach the engine
            log.exception("changeCD(%s) failed unexpectedly", _shown(vmID))
            return internal_error(exc).response()
        return {"vmList": {}}

    def capabilities(self) -> dict[str, bool]:
        """What the host advertises to the engine for this feature."""
        return {"cd_change_pdiv": True}
