"""Support for the vdsm adapter tests: the acceptance driver on the rig's ``vdsm`` profile,
and a vdsm-shaped storage facade over the loop activator for real-device and real-VM tests.

(No ``__init__.py`` in this folder: a test package named ``vdsm`` would shadow vdsm itself.)
"""


from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from acceptance.driver import AcceptanceDriver
from ovirt_cdrom.adapters.loop import LoopVolumeActivator
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.adapters.vdsm.fake import in_use_message
from ovirt_cdrom.adapters.vdsm.storage import (
    CANNOT_ACTIVATE_LVS,
    CANNOT_DEACTIVATE_LV,
    IMAGE_DOES_NOT_EXIST_IN_SD,
    VOLUME_DOES_NOT_EXIST,
)
from ovirt_cdrom.domain.errors import CdromError, VolumeInUse, VolumeNotFound
from ovirt_cdrom.domain.model import VolumeRef
from rig import Rig

FEATURES = ("insert.feature", "eject.feature", "change.feature", "recovery.feature",
            "legacy_path.feature", "bad_input.feature")


def vdsm_driver(encoding: Encoding) -> AcceptanceDriver:
    """The acceptance driver on the rig's ``vdsm`` profile: volumes go through
    :class:`VdsmVolumeActivator` and ``FakeVdsmStorage``'s status dicts (201 for a volume
    storage does not have, "in use" swallowed as vdsm 4.50 does)."""
    return AcceptanceDriver(Rig(profile="vdsm", encoding=encoding))


class LoopVdsmStorage:
    """vdsm's storage dispatcher shape over the loop activator (real loop devices).

    Answers as vdsm does: status dicts, never raising; 201 for a volume storage does not
    have; ``teardownImage`` tears down every volume of the image (listed from the image
    folder) and, like vdsm 4.50, swallows "in use" (the LV, here the loop device, stays).
    """

    def __init__(self, loop: LoopVolumeActivator) -> None:
        self.loop = loop
        self.calls: list[str] = []

    def prepareImage(self, sdUUID: str, spUUID: str, imgUUID: str,  # noqa: N802, N803
                     leafUUID: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append(f"prepareImage {imgUUID}")
        volume = VolumeRef(spUUID, sdUUID, imgUUID, leafUUID)
        try:
            media = self.loop.prepare(volume)
        except VolumeNotFound as err:
            return _status(VOLUME_DOES_NOT_EXIST, f"Volume does not exist: ({leafUUID!r},) {err}")
        except CdromError as err:
            return _status(CANNOT_ACTIVATE_LVS, f"Cannot activate Logical Volumes: {err}")
        return {**_status(0, "OK"), "path": media.path,
                "info": {"type": media.disk_type.value, "path": media.path},
                "imgVolumesInfo": [{"domainID": sdUUID, "imageID": imgUUID,
                                    "volumeID": leafUUID, "path": media.path}]}

    def teardownImage(self, sdUUID: str, spUUID: str,  # noqa: N802, N803
                      imgUUID: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append(f"teardownImage {imgUUID}")
        folder = self.loop.storage_root / sdUUID / imgUUID
        if not folder.is_dir():
            return _status(IMAGE_DOES_NOT_EXIST_IN_SD,
                           f"Image does not exist in domain: 'image={imgUUID}, domain={sdUUID}'")
        for image in sorted(folder.iterdir()):
            try:
                self.loop.teardown(VolumeRef(spUUID, sdUUID, imgUUID, image.name))
            except VolumeInUse:
                continue  # vdsm 4.50 logs "Cannot deactivate LV ..." and carries on
            except CdromError as err:
                return _status(CANNOT_DEACTIVATE_LV,
                               f"Cannot deactivate Logical Volume: {err}")
        return _status(0, "OK")


class LoopReportingVdsmStorage(LoopVdsmStorage):
    """The same, as a vdsm that reports "in use" (552 with LVM's line) instead of hiding it."""

    def teardownImage(self, sdUUID: str, spUUID: str,  # noqa: N802, N803
                      imgUUID: str) -> dict[str, Any]:  # noqa: N803
        folder = self.loop.storage_root / sdUUID / imgUUID
        for image in sorted(folder.iterdir()) if folder.is_dir() else []:
            volume = VolumeRef(spUUID, sdUUID, imgUUID, image.name)
            devices = self.loop.attached(self.loop.image_file(volume))
            if any(self.loop.holders(d) for d in devices):
                return _status(CANNOT_DEACTIVATE_LV, in_use_message(sdUUID, image.name))
        return super().teardownImage(sdUUID, spUUID, imgUUID)


class LoopProbe:
    """The host's answers for the loop layout: attached file, existing legacy file."""

    def __init__(self, loop: LoopVolumeActivator) -> None:
        self.loop = loop

    def volume_active(self, volume: VolumeRef) -> bool:
        return self.loop.is_active(volume)

    def file_exists(self, path: str) -> bool:
        return os.path.isfile(path)


def _status(code: int, message: str) -> dict[str, Any]:
    return {"status": {"code": code, "message": message}}


def status_of(answer: Mapping[str, Any]) -> tuple[int, str]:
    status = answer["status"]
    return status["code"], status["message"]
