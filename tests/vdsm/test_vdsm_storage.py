"""VdsmVolumeActivator's reading of vdsm's answers, beyond the VolumeActivator contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.adapters.vdsm.fake import FakeVdsmStorage, MemoryProbe
from ovirt_cdrom.adapters.vdsm.storage import (
    CANNOT_ACTIVATE_LVS,
    CANNOT_DEACTIVATE_LV,
    VdsmVolumeActivator,
)
from ovirt_cdrom.adapters.vdsm_layout import block_path, tray_of
from ovirt_cdrom.domain.errors import StorageError, VolumeInUse
from ovirt_cdrom.domain.model import DiskType, Media, VolumeRef
from rig import DOMAIN, vm_id, volume


def _setup(**fake: Any) -> tuple[MemoryHost, FakeVdsmStorage, VdsmVolumeActivator, VolumeRef]:
    host = MemoryHost(files=set())
    iso = volume("iso")
    host.add_volume(iso)
    storage = FakeVdsmStorage(host, **fake)
    return host, storage, VdsmVolumeActivator(storage, MemoryProbe(host)), iso


def _hold(host: MemoryHost, path: str) -> None:
    """A VM whose tray holds ``path`` (the volume open, as QEMU holds it)."""
    vm = vm_id("holder")
    host.add_vm(vm)
    host.add_drive(vm, "sata", 2, Media(path, DiskType.BLOCK))


def test_a_volume_of_a_file_domain_is_prepared_as_a_file() -> None:
    _host, _storage, activator, iso = _setup(file_domains=frozenset({DOMAIN}))

    media = activator.prepare(iso)

    assert media.disk_type is DiskType.FILE
    assert iso.in_tray(tray_of(media.path))


def test_in_use_swallowed_by_vdsm_is_recognised_by_the_volume_still_active() -> None:
    host, _storage, activator, iso = _setup(swallow_in_use=True)
    _hold(host, activator.prepare(iso).path)

    with pytest.raises(VolumeInUse, match="still active after teardownImage"):
        activator.teardown(iso)
    assert host.volumes[iso]


def test_in_use_reported_by_vdsm_is_recognised_by_lvm_message() -> None:
    host, _storage, activator, iso = _setup(swallow_in_use=False)
    _hold(host, activator.prepare(iso).path)

    with pytest.raises(VolumeInUse) as caught:
        activator.teardown(iso)
    assert caught.value.fields["storage_code"] == CANNOT_DEACTIVATE_LV
    assert host.volumes[iso]


@pytest.mark.parametrize(("verb", "code", "message"), [
    ("prepareImage", CANNOT_ACTIVATE_LVS, "Cannot activate Logical Volumes: lvchange failed"),
    ("teardownImage", CANNOT_DEACTIVATE_LV, "Cannot deactivate Logical Volume: lvchange failed"),
], ids=["prepare", "teardown"])
@pytest.mark.parametrize("after", [False, True], ids=["before-effect", "after-effect"])
def test_other_failures_are_storage_errors_with_vdsm_code(verb: str, code: int, message: str,
                                                         after: bool) -> None:
    host, storage, activator, iso = _setup()
    if verb == "teardownImage":
        activator.prepare(iso)
    storage.refuse(verb, code, message, after=after)

    with pytest.raises(StorageError) as caught:
        activator.prepare(iso) if verb == "prepareImage" else activator.teardown(iso)
    assert type(caught.value) is StorageError
    assert caught.value.fields["storage_code"] == code
    assert f"({code})" in caught.value.message and "lvchange failed" in caught.value.message
    # vdsm failed before or after the verb took effect: the answer says no more than that.
    assert host.volumes[iso] is ((verb == "prepareImage") == after)


class Misbehaving:
    """A storage object in front of vdsm answering what vdsm's dispatcher never would."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def prepareImage(self, *args: str) -> Mapping[str, Any]:  # noqa: N802
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[return-value]

    def teardownImage(self, *args: str) -> Mapping[str, Any]:  # noqa: N802
        return self.prepareImage(*args)


_OK = {"status": {"code": 0, "message": "OK"}}


@pytest.mark.parametrize("answer", [
    None,
    {"path": "/x"},
    {"status": {"code": "0", "message": "OK"}},
    {"status": {"code": True, "message": "OK"}},
    ConnectionError("proxy down"),
    _OK,  # no path, no info
    {**_OK, "path": "/somewhere/else", "info": {"type": "block"}},
    {**_OK, "path": "PATH", "info": {"type": "network"}},
], ids=["none", "no-status", "string-code", "bool-code", "raises", "no-path",
        "foreign-path", "network"])
def test_an_answer_vdsm_never_gives_is_a_storage_error(answer: object) -> None:
    iso: VolumeRef = volume("iso")
    if isinstance(answer, dict) and answer.get("path") == "PATH":
        answer = {**answer, "path": block_path(iso)}
    activator = VdsmVolumeActivator(Misbehaving(answer), MemoryProbe(MemoryHost()))

    with pytest.raises(StorageError):
        activator.prepare(iso)
