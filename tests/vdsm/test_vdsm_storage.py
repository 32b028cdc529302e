"""VdsmVolumeActivator's reading of vdsm's answers, beyond the VolumeActivator contract."""

from __future__ import annotations

import uuid
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
from ovirt_cdrom.domain.errors import StorageError, VolumeInUse
from ovirt_cdrom.domain.model import DiskType, VmId, VolumeRef

POOL = "5e3b2a10-0d0f-4c3e-9a51-7d3c1f0e2b4a"
DOMAIN = "0e9b1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4"


def _setup(**fake: Any) -> tuple[MemoryHost, VdsmVolumeActivator, VolumeRef]:
    host = MemoryHost(files=set())
    volume = VolumeRef(POOL, DOMAIN, str(uuid.uuid4()), str(uuid.uuid4()))
    host.add_volume(volume)
    return host, VdsmVolumeActivator(FakeVdsmStorage(host, **fake), MemoryProbe(host)), volume


def _hold(host: MemoryHost, path: str) -> None:
    vm = VmId(str(uuid.uuid4()))
    host.add_vm(vm)
    host.add_drive(vm, "sata", 2, source=path)


def test_a_volume_of_a_file_domain_is_prepared_as_a_file() -> None:
    _host, activator, volume = _setup(file_domains=frozenset({DOMAIN}))

    media = activator.prepare(volume)

    assert media.disk_type is DiskType.FILE
    assert volume.is_at(media.path)


def test_in_use_swallowed_by_vdsm_is_recognised_by_the_volume_still_active() -> None:
    host, activator, volume = _setup(swallow_in_use=True)
    _hold(host, activator.prepare(volume).path)

    with pytest.raises(VolumeInUse, match="still active after teardownImage"):
        activator.teardown(volume)
    assert host.volumes[volume]


def test_in_use_reported_by_vdsm_is_recognised_by_lvm_message() -> None:
    host, activator, volume = _setup(swallow_in_use=False)
    _hold(host, activator.prepare(volume).path)

    with pytest.raises(VolumeInUse) as caught:
        activator.teardown(volume)
    assert caught.value.fields["storage_code"] == CANNOT_DEACTIVATE_LV
    assert host.volumes[volume]


@pytest.mark.parametrize(("call", "code"), [("volumes.prepare", CANNOT_ACTIVATE_LVS),
                                            ("volumes.teardown", CANNOT_DEACTIVATE_LV)],
                         ids=["prepare", "teardown"])
def test_other_failures_are_storage_errors_with_vdsm_code(call: str, code: int) -> None:
    host, activator, volume = _setup()
    host.script.fail(call, StorageError("lvchange failed"))

    with pytest.raises(StorageError) as caught:
        activator.prepare(volume) if call == "volumes.prepare" else activator.teardown(volume)
    assert type(caught.value) is StorageError
    assert caught.value.fields["storage_code"] == code
    assert f"({code})" in caught.value.message and "lvchange failed" in caught.value.message


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
    volume = VolumeRef(POOL, DOMAIN, str(uuid.uuid4()), str(uuid.uuid4()))
    if isinstance(answer, dict) and answer.get("path") == "PATH":
        answer = {**answer, "path": f"/rhev/data-center/mnt/blockSD{volume.path_suffix}"}
    activator = VdsmVolumeActivator(Misbehaving(answer), MemoryProbe(MemoryHost()))

    with pytest.raises(StorageError):
        activator.prepare(volume)
