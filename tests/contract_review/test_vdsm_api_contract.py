"""Black-box probes of the vdsm-facing ``VM.changeCD`` (issue 2, vdsm facts).

Built the way a reviewer would reach it: ``container.build().core.api()`` over the default
in-memory host. Each case checks the answer's exact shape and code, and that a refused
request changes nothing on the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.adapters.vdsm_api import VdsmApi
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.errors import HypervisorError, StorageError
from ovirt_cdrom.domain.model import VmId, VolumeRef, block_volume_path

POOL = "13345997-b94f-42dd-b8ef-a1392f65cebf"
DOM = "88252cf6-381e-48f0-8795-a294a32c7149"
VM = "6f4b1f2e-0c1d-4a8e-9b7a-3c2d1e0f9a8b"
OTHER_VM = "0d7c2a44-57a1-4f0e-9b1e-7c8a2d3e4f50"


def spec(n: int) -> dict[str, str]:
    return {"poolID": POOL, "domainID": DOM,
            "imageID": f"{n:08x}-1111-4111-8111-111111111111",
            "volumeID": f"{n:08x}-2222-4222-8222-222222222222"}


def ref(n: int) -> VolumeRef:
    return VolumeRef.parse(spec(n))


@dataclass
class Env:
    api: VdsmApi
    host: MemoryHost

    def source(self) -> str | None:
        return self.host.vm(VmId(VM)).drives[next(iter(self.host.vm(VmId(VM)).drives))].source

    def snapshot(self) -> tuple[Any, ...]:
        vm = self.host.vm(VmId(VM))
        return (self.source(), vm.metadata_xml, dict(self.host.volumes))


@pytest.fixture
def env() -> Iterator[Env]:
    app = build()
    host: MemoryHost = app.memory.host()
    vm = VmId(VM)
    host.add_vm(vm)
    host.add_vm(VmId(OTHER_VM), migrating=True)
    host.add_drive(VmId(OTHER_VM), "sata", 2, None)
    for n in (1, 2):
        host.add_volume(ref(n))
    host.add_drive(vm, "sata", 2, None)
    yield Env(app.core.api(), host)


def sdc(iface: str = "sata", index: object = "2", **target: Any) -> dict[str, Any]:
    return {"iface": iface, "index": index, **target}


SUCCESS: dict[str, Any] = {"vmList": {}}


@pytest.mark.parametrize("index", [2, "2"])
def test_insert_change_eject_with_vdsm_request_shapes(env: Env, index: object) -> None:
    assert env.api.changeCD(VM, sdc(index=index, drive_spec={"device": "cdrom", **spec(1)})
                            ) == SUCCESS
    assert env.source() == block_volume_path(ref(1))
    assert env.host.volumes[ref(1)] is True
    assert env.api.changeCD(VM, sdc(index=index, drive_spec=spec(2))) == SUCCESS
    assert env.source() == block_volume_path(ref(2))
    assert (env.host.volumes[ref(1)], env.host.volumes[ref(2)]) == (False, True)
    # The same CD again: a successful no-op.
    assert env.api.changeCD(VM, sdc(index=index, drive_spec=spec(2))) == SUCCESS
    assert env.api.changeCD(VM, sdc(index=index, drive_spec=None)) == SUCCESS
    assert env.source() is None
    assert not any(env.host.volumes.values())


def test_legacy_path_route(env: Env) -> None:
    env.host.files = {"/iso/a.iso"}
    assert env.api.changeCD(VM, sdc(drive_spec=spec(1))) == SUCCESS
    before = env.snapshot()
    missing = env.api.changeCD(VM, sdc(path="/iso/none.iso"))
    assert set(missing) == {"code", "message"} and missing["code"] == 13
    assert env.snapshot() == before
    assert env.api.changeCD(VM, sdc(path="/iso/a.iso")) == SUCCESS
    assert env.source() == "/iso/a.iso"
    assert env.host.volumes[ref(1)] is False  # the volume it replaced is torn down
    assert env.api.changeCD(VM, sdc(path="")) == SUCCESS  # path "" ejects
    assert env.source() is None


@pytest.mark.parametrize(("vm", "cdromspec", "code"), [
    (OTHER_VM.replace("0d7c", "9999"), sdc(drive_spec=spec(1)), 1),       # NoSuchVM
    (VM, sdc(index=3, drive_spec=spec(1)), 41),                           # no such drive
    (OTHER_VM, sdc(drive_spec=spec(1)), 51),                              # migrating
    (VM, sdc(drive_spec={**spec(1), "protocol": "gluster", "hosts": []}), 75),
    (VM, sdc(drive_spec={**spec(1), "diskType": "network"}), 75),
    (VM, sdc(drive_spec={**spec(1), "volumeID": "../../etc/passwd"}), 100),
    (VM, sdc(drive_spec={k: v for k, v in spec(1).items() if k != "poolID"}), 100),
    (VM, sdc(iface="usb", drive_spec=spec(1)), 100),
    (VM, sdc(index="two", drive_spec=spec(1)), 100),
    (VM, sdc(index=2.0, drive_spec=spec(1)), 100),
    (VM, sdc(path="relative.iso"), 100),
    (VM, sdc(path="/iso/../etc/passwd"), 100),
    (VM, {"iface": "sata", "index": "2"}, 100),
    (VM, None, 100),
    ("not-a-uuid", sdc(drive_spec=spec(1)), 100),
    (None, sdc(drive_spec=spec(1)), 100),
    (VM, sdc(drive_spec={**spec(1), "volumeID": "0badc0de-2222-4222-8222-222222222222"}), 1630),
])
def test_refusals_have_vdsms_shape_and_code_and_change_nothing(
        env: Env, vm: object, cdromspec: object, code: int) -> None:
    assert env.api.changeCD(VM, sdc(drive_spec=spec(1))) == SUCCESS
    before = env.snapshot()
    answer = env.api.changeCD(vm, cdromspec)
    assert set(answer) == {"code", "message"}
    assert answer["code"] == code
    assert isinstance(answer["message"], str) and answer["message"]
    assert env.snapshot() == before


def test_prepare_and_media_change_failures_are_1630_and_41(env: Env) -> None:
    assert env.api.changeCD(VM, sdc(drive_spec=spec(1))) == SUCCESS
    before = env.snapshot()
    env.host.script.fail("volumes.prepare", StorageError("lvchange failed"))
    assert env.api.changeCD(VM, sdc(drive_spec=spec(2)))["code"] == 1630
    assert env.snapshot() == before
    env.host.script.fail("hypervisor.load", HypervisorError("qemu refused"))
    assert env.api.changeCD(VM, sdc(drive_spec=spec(2)))["code"] == 41
    assert env.snapshot() == before


def test_capability_is_advertised(env: Env) -> None:
    assert env.api.capabilities() == {"cd_change_pdiv": True}


def test_a_huge_index_is_a_typed_refusal(env: Env) -> None:
    answer = env.api.changeCD(VM, sdc(index=10 ** 5000, path=""))
    assert answer["code"] == 100
    assert "index" in answer["message"] and "ValueError" not in answer["message"]
