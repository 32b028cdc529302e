"""Black-box probes of the vdsm-facing ``VM.changeCD`` (issue 2, vdsm facts).

Built the way a reviewer would reach it: the product's container over the in-memory host
(the tests' rig, ``tests/rig.py``), called as the engine calls it. Each case checks the
answer's exact shape and code, and that a refused request changes nothing on the host.
"""

from __future__ import annotations

from typing import Any

import pytest
from ovirt_cdrom.adapters.vdsm_layout import block_path
from ovirt_cdrom.domain.model import VolumeRef
from rig import SDC, SUCCESS, Rig, uid, vm_id, volume

VM = vm_id("vm")
OTHER_VM = vm_id("migrating-vm")
UNKNOWN_VM = vm_id("unknown-vm")


def spec(n: int) -> dict[str, str]:
    """The PDIV of ISO ``n``, as the engine sends it."""
    return volume(n).as_dict()


def ref(n: int) -> VolumeRef:
    return VolumeRef.parse(spec(n))


@pytest.fixture
def rig() -> Rig:
    rig = Rig()
    rig.add_vm(VM)
    rig.add_vm(OTHER_VM, migrating=True)
    for n in (1, 2):
        rig.add_volume(ref(n))
    rig.settle()
    return rig


def source(rig: Rig) -> str | None:
    """The path the VM's CD-ROM tray holds (what libvirt was given)."""
    with rig.host.lock:
        return rig.host.drive(VM, SDC).source


def sdc(iface: str = "sata", index: object = "2", **target: Any) -> dict[str, Any]:
    return {"iface": iface, "index": index, **target}


@pytest.mark.parametrize("index", [2, "2"])
def test_insert_change_eject_with_vdsm_request_shapes(rig: Rig, index: object) -> None:
    assert rig.change(VM, sdc(index=index, drive_spec={"device": "cdrom", **spec(1)})
                      ) == SUCCESS
    assert source(rig) == block_path(ref(1))
    assert rig.active() == {ref(1)}
    assert rig.change(VM, sdc(index=index, drive_spec=spec(2))) == SUCCESS
    assert source(rig) == block_path(ref(2))
    assert rig.active() == {ref(2)}
    # The same CD again: a successful no-op.
    assert rig.change(VM, sdc(index=index, drive_spec=spec(2))) == SUCCESS
    assert rig.change(VM, sdc(index=index, drive_spec=None)) == SUCCESS
    assert source(rig) is None
    assert rig.active() == set()
    assert rig.violations() == []


def test_legacy_path_route(rig: Rig) -> None:
    rig.only_files({"/iso/a.iso"})
    assert rig.change(VM, sdc(drive_spec=spec(1))) == SUCCESS
    before = rig.snapshot()
    missing = rig.change(VM, sdc(path="/iso/none.iso"))
    assert missing is not None
    assert set(missing) == {"code", "message"} and missing["code"] == 13
    assert rig.snapshot() == before
    assert rig.change(VM, sdc(path="/iso/a.iso")) == SUCCESS
    assert source(rig) == "/iso/a.iso"
    assert ref(1) not in rig.active()  # the volume it replaced is torn down
    assert rig.change(VM, sdc(path="")) == SUCCESS  # path "" ejects
    assert source(rig) is None


@pytest.mark.parametrize(("vm", "cdromspec", "code"), [
    (str(UNKNOWN_VM), sdc(drive_spec=spec(1)), 1),                        # NoSuchVM
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
    (VM, sdc(drive_spec={**spec(1), "volumeID": uid("volume", "absent")}), 1630),
])
def test_refusals_have_vdsms_shape_and_code_and_change_nothing(
        rig: Rig, vm: object, cdromspec: object, code: int) -> None:
    assert rig.change(VM, sdc(drive_spec=spec(1))) == SUCCESS
    before = rig.snapshot()
    answer = rig.change(vm, cdromspec)
    assert answer is not None
    assert set(answer) == {"code", "message"}
    assert answer["code"] == code
    assert isinstance(answer["message"], str) and answer["message"]
    assert rig.snapshot() == before


def test_prepare_and_media_change_failures_are_1630_and_41(rig: Rig) -> None:
    assert rig.change(VM, sdc(drive_spec=spec(1))) == SUCCESS
    before = rig.snapshot()
    rig.fail("volumes.prepare")
    answer = rig.change(VM, sdc(drive_spec=spec(2)))
    assert answer is not None and answer["code"] == 1630
    assert rig.snapshot() == before
    rig.fail("hypervisor.load")
    answer = rig.change(VM, sdc(drive_spec=spec(2)))
    assert answer is not None and answer["code"] == 41
    assert rig.snapshot() == before


def test_capability_is_advertised(rig: Rig) -> None:
    assert rig.api.capabilities() == {"cd_change_pdiv": True}


def test_a_huge_index_is_a_typed_refusal(rig: Rig) -> None:
    answer = rig.change(VM, sdc(index=10 ** 5000, path=""))
    assert answer is not None and answer["code"] == 100
    assert "index" in answer["message"] and "ValueError" not in answer["message"]
