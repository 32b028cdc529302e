"""Hostile and broken input: a typed vdsm error, and nothing on the host changes.

The vdsm-facing entry (``VdsmApi.changeCD``) gets malformed, missing, oversized and
wrongly typed fields, path traversal and XML metacharacters; VM metadata read from
"libvirt" gets entity tricks, DTDs, deep nesting, garbage and conflicting changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ovirt_cdrom.domain.model import EMPTY_TRAY, FileTray, VmId
from ovirt_cdrom.domain.state import EMPTY, Ejecting, Loaded
from ovirt_cdrom.service import RecoveryReport
from rig import SUCCESS, Rig, uid, vm_id

from .harness import (
    FIGURES,
    LAYOUT,
    build_rig,
    drives_of,
    meaning,
    snapshot,
    spec,
    tray,
    vol,
)

CODES = {1, 13, 41, 51, 75, 100, 1630}
MUTATING = ("metadata.write", "volumes.prepare", "volumes.teardown", "hypervisor.load",
            "hypervisor.eject")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HUGE = "a" * (3 * 1024 * 1024)


def vid(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"int-of-{value.bit_length()}-bits"
    return repr(value)[:30]


DRIVES = drives_of(LAYOUT)


@pytest.fixture
def rig() -> Rig:
    rig, drives = build_rig(loaded={0: 0})
    assert drives == DRIVES
    return rig


def call(rig: Rig, vm: object, cdromspec: object) -> dict[str, Any]:
    before, meant = snapshot(rig), meaning(rig)
    answer = rig.step(lambda: rig.api.changeCD(vm, cdromspec))
    FIGURES["hostile input: requests"] += 1
    assert isinstance(answer, dict)
    if answer != SUCCESS:
        assert set(answer) == {"code", "message"} and answer["code"] in CODES, answer
        assert isinstance(answer["message"], str) and len(answer["message"]) < 2000
        if answer["code"] in (1, 41, 75, 100):
            # Refused before anything was touched.
            assert [c for c in rig.calls() if c in MUTATING] == []
            assert snapshot(rig) == before
        else:
            # Storage or hypervisor refused (a volume or file that does not exist): the
            # change was undone, the host is as before in meaning.
            assert meaning(rig) == meant
    return answer


def good(**changes: Any) -> dict[str, Any]:
    cdromspec = spec(DRIVES[0], ("volume", 1))
    cdromspec["drive_spec"] = dict(cdromspec["drive_spec"])
    for key, value in changes.items():
        if key in ("iface", "index", "path"):
            cdromspec[key] = value
        else:
            cdromspec["drive_spec"][key] = value
    return cdromspec


def vm0() -> str:
    return str(DRIVES[0].vm)


_UUID = uid("hostile")  # a good UUID, made bad below
BAD_UUIDS: list[object] = [
    None, 1, 1.5, True, [], {}, b"\x00", "", " ", "not-a-uuid", "../../etc/passwd",
    f"{_UUID}/../x", "<vm>&amp;</vm>", "'\"><!--",
    _UUID[:-1], _UUID.replace("-", ""), _UUID + "\x00",
    HUGE, 10**5000]


@pytest.mark.parametrize("value", BAD_UUIDS, ids=vid)
def test_bad_vm_id_is_invalid_parameter(rig: Rig, value: object) -> None:
    assert call(rig, value, good())["code"] == 100


@pytest.mark.parametrize("field", ["poolID", "domainID", "imageID", "volumeID"])
@pytest.mark.parametrize("value", BAD_UUIDS, ids=vid)
def test_bad_pdiv_is_invalid_parameter(rig: Rig, field: str, value: object) -> None:
    assert call(rig, vm0(), good(**{field: value}))["code"] == 100


@pytest.mark.parametrize("field", ["poolID", "domainID", "imageID", "volumeID"])
def test_missing_pdiv_is_invalid_parameter(rig: Rig, field: str) -> None:
    cdromspec = good()
    del cdromspec["drive_spec"][field]
    assert call(rig, vm0(), cdromspec)["code"] == 100


@pytest.mark.parametrize("iface", [None, 2, "", "SATA", "usb", "sata\x00", "../sata", HUGE,
                                   ["sata"], "<sata/>"], ids=vid)
def test_bad_iface_is_invalid_parameter(rig: Rig, iface: object) -> None:
    assert call(rig, vm0(), good(iface=iface))["code"] == 100


@pytest.mark.parametrize("index", [None, -1, 2.0, "2.0", "-1", "", " 2", "two", True,
                                   "²", "٢", 10**9, 10**5000, "9" * 100_000, [2], HUGE],
                         ids=vid)
def test_bad_index_is_invalid_parameter(rig: Rig, index: object) -> None:
    assert call(rig, vm0(), good(index=index))["code"] == 100


@pytest.mark.parametrize("cdromspec", [None, [], "sata", 2, {}, {"iface": "sata"},
                                       {"index": "2"}, {"iface": "sata", "index": "2"},
                                       {"iface": "sata", "index": "2", "drive_spec": []},
                                       {"iface": "sata", "index": "2", "drive_spec": "x"},
                                       {"iface": "sata", "index": "2", "drive_spec": 7}],
                         ids=vid)
def test_malformed_cdromspec_is_invalid_parameter(rig: Rig, cdromspec: object) -> None:
    assert call(rig, vm0(), cdromspec)["code"] == 100


@pytest.mark.parametrize("path", ["relative/x.iso", "/iso/../etc/passwd", "/../x", "/iso/..",
                                  "/iso/x\x00.iso", "/" + HUGE, 7, None, b"/iso/x.iso",
                                  ["/iso/x.iso"]], ids=vid)
def test_bad_legacy_path_is_invalid_parameter(rig: Rig, path: object) -> None:
    assert call(rig, vm0(), {"iface": "sata", "index": "2", "path": path})["code"] == 100


@pytest.mark.parametrize("path", ["/iso/<x>&amp;'\".iso", "/iso/]]>.iso", "/iso/x.iso"])
def test_legacy_path_that_does_not_exist_is_image_file_not_found(rig: Rig, path: str) -> None:
    assert call(rig, vm0(), {"iface": "sata", "index": "2", "path": path})["code"] == 13


def test_legacy_path_with_xml_metacharacters_loads_and_touches_no_metadata(rig: Rig) -> None:
    path = "/iso/<ovirt-vm:device name=\"sdc\">&amp;'.iso"
    assert rig.host.files is not None
    rig.host.files.add(path)
    answer = call(rig, vm0(), {"iface": "sata", "index": "2", "path": path})
    assert answer == {"vmList": {}}
    assert tray(rig, DRIVES[0]) == FileTray(path)
    assert rig.violations() == []


def test_unknown_vm_is_no_such_vm(rig: Rig) -> None:
    assert call(rig, str(vm_id("unknown")), good())["code"] == 1


@pytest.mark.parametrize("iface,index", [("sata", 3), ("ide", 2), ("virtio", 0),
                                         ("sata", 18277)])
def test_unknown_drive_is_change_disk_failed(rig: Rig, iface: str, index: int) -> None:
    assert call(rig, vm0(), good(iface=iface, index=index))["code"] == 41


def test_network_cd_is_unsupported(rig: Rig) -> None:
    assert call(rig, vm0(), good(diskType="network", protocol="nbd"))["code"] == 75


def test_wrong_device_is_invalid_parameter(rig: Rig) -> None:
    assert call(rig, vm0(), good(device="disk"))["code"] == 100


# --- Property-based fuzzing of cdromspec ----------------------------------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=40) | st.binary(max_size=10)
    | st.sampled_from(["../", "..", "/..", "<x/>", "&amp;", "]]>", "sata", "ide", "2",
                       "cdrom", "", "\x00"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=3),
    max_leaves=8)
KEYS = ["iface", "index", "drive_spec", "path", "device", "poolID", "domainID", "imageID",
        "volumeID", "diskType", "protocol"]


def not_uuid(value: object) -> bool:
    return not (isinstance(value, str) and UUID_RE.match(value.strip().lower()))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cdromspec=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), junk,
                                 max_size=6),
       drive_spec=st.none() | st.dictionaries(st.sampled_from(KEYS), junk, max_size=6))
def test_fuzzed_cdromspec_answers_a_vdsm_code_and_changes_nothing_on_error(
        rig: Rig, cdromspec: dict[str, Any], drive_spec: dict[str, Any] | None) -> None:
    if drive_spec is not None:
        cdromspec["drive_spec"] = drive_spec
    FIGURES["hostile input: fuzzed cdromspecs"] += 1
    call(rig, vm0(), cdromspec)
    assert rig.violations() == []


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["poolID", "domainID", "imageID", "volumeID", "iface", "index",
                              "vm"]),
       value=junk.filter(not_uuid))
def test_one_fuzzed_field_of_a_good_request_is_refused_before_any_port_call(
        rig: Rig, field: str, value: object) -> None:
    if field == "iface" and value in ("sata", "scsi"):
        return
    if field == "index" and value in (2, "2"):
        return
    FIGURES["hostile input: fuzzed fields"] += 1
    vm, cdromspec = (value, good()) if field == "vm" else (vm0(), good(**{field: value}))
    answer = call(rig, vm, cdromspec)
    assert answer["code"] in (100, 41)  # 41: a well-formed index of a drive the VM lacks
    if answer["code"] == 100:
        assert rig.calls() == []


# --- Metadata from libvirt is untrusted ------------------------------------------------------

NS = 'xmlns:ovirt-vm="http://ovirt.org/vm/1.0"'
HOSTILE_METADATA = {
    "billion-laughs": f'<?xml version="1.0"?><!DOCTYPE vm [<!ENTITY a "aaaaaaaaaa">'
                      f'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                      f'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                      f'<ovirt-vm:vm {NS}><ovirt-vm:x>&c;</ovirt-vm:x></ovirt-vm:vm>',
    "external-entity": f'<?xml version="1.0"?><!DOCTYPE vm [<!ENTITY e SYSTEM '
                       f'"file:///etc/passwd">]><ovirt-vm:vm {NS}>&e;</ovirt-vm:vm>',
    "external-dtd": f'<?xml version="1.0"?><!DOCTYPE vm SYSTEM "http://127.0.0.1:1/x.dtd">'
                    f'<ovirt-vm:vm {NS}/>',
    "deep-nesting": f'<ovirt-vm:vm {NS}>' + "<ovirt-vm:x>" * 200 + "</ovirt-vm:x>" * 200
                    + "</ovirt-vm:vm>",
    "garbage": "\x00\xff<<<not xml at all",
    "wrong-root": "<domain><name>x</name></domain>",
    "huge": f'<ovirt-vm:vm {NS}><ovirt-vm:x>{"a" * (5 * 1024 * 1024)}</ovirt-vm:x></ovirt-vm:vm>',
}


def conflicting_changes() -> str:
    a, b = vol(0).as_dict(), vol(1).as_dict()

    def pdiv(v: dict[str, str]) -> str:
        return "".join(f"<ovirt-vm:{k}>{v[k]}</ovirt-vm:{k}>" for k in sorted(v))

    return (f'<ovirt-vm:vm {NS}><ovirt-vm:device devtype="disk" name="sdc">{pdiv(a)}'
            f"<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>{pdiv(b)}"
            f"</ovirt-vm:change><ovirt-vm:change><ovirt-vm:state>ejecting</ovirt-vm:state>"
            f"</ovirt-vm:change></ovirt-vm:device></ovirt-vm:vm>")


def two_loading_entries() -> str:
    def entry(v: dict[str, str]) -> str:
        return ('<ovirt-vm:device devtype="disk" name="sdc" state="loading">'
                + "".join(f"<ovirt-vm:{k}>{v[k]}</ovirt-vm:{k}>" for k in sorted(v))
                + "</ovirt-vm:device>")

    return (f"<ovirt-vm:vm {NS}>{entry(vol(0).as_dict())}"
            f"{entry(vol(1).as_dict())}</ovirt-vm:vm>")


def interrupted_ejects(rig: Rig) -> None:
    """An interrupted eject on drives 0 and 3 (other VMs): marker, volume still active."""
    for n in (0, 3):
        d = DRIVES[n]
        state = rig.state(d.vm, d.name)
        assert isinstance(state, Loaded)
        rig.host.put(d.vm, d.name, None)
        rig.write(d.vm, d.name, Ejecting(state.volume))


def assert_others_recovered(rig: Rig, report: RecoveryReport, victim: VmId) -> None:
    others = [d for d in report.drives if d.vm != victim]
    assert others and all(d.clean and d.error is None for d in others), others
    for n in (0, 3):
        assert rig.state(DRIVES[n].vm, DRIVES[n].name) == EMPTY


@pytest.mark.parametrize("kind", HOSTILE_METADATA)
def test_hostile_metadata_is_a_typed_error_and_other_vms_still_recover(kind: str) -> None:
    # VM 1 (two drives) gets the hostile document; VMs 0 and 2 have leftovers to recover.
    rig, _ = build_rig(loaded={0: 0, 3: 1})
    victim = DRIVES[1]
    rig.host.set_raw_metadata(victim.vm, HOSTILE_METADATA[kind])
    interrupted_ejects(rig)
    rig.settle()
    FIGURES["hostile input: hostile metadata documents"] += 1
    answer = rig.change(victim.vm, spec(victim, ("volume", 2)))
    assert answer is not None and answer.get("code") == 100, answer
    assert "metadata" in answer["message"].lower()
    assert tray(rig, victim) == EMPTY_TRAY
    assert vol(2) not in rig.active()
    report = rig.step(rig.service.recover_all)  # the agent that answered
    assert report is not None
    victim_entries = [d for d in report.drives if d.vm == victim.vm]
    assert victim.vm in report.vm_errors or any(d.error for d in victim_entries)
    assert_others_recovered(rig, report, victim.vm)
    assert rig.active() == set()


@pytest.mark.parametrize("make", [conflicting_changes, two_loading_entries],
                         ids=["conflicting-changes", "two-loading-entries"])
def test_entries_no_flow_writes_are_settled_from_the_tray(make: Callable[[], str]) -> None:
    """A drive's entries that make no sense (well-formed XML, but no state the design or
    vdsm 4.50 knows) do not block the drive: the tray is the truth, the volumes they name
    that no tray holds are torn down, and the change asked for goes ahead."""
    rig, _ = build_rig(loaded={0: 0, 3: 1})
    victim = DRIVES[1]
    rig.host.set_raw_metadata(victim.vm, make())
    interrupted_ejects(rig)
    rig.settle()
    FIGURES["hostile input: unreadable drive entries"] += 1
    assert rig.change(victim.vm, spec(victim, ("volume", 2))) == SUCCESS
    assert vol(2).in_tray(tray(rig, victim))
    assert rig.state(victim.vm, victim.name) == Loaded(vol(2))
    report = rig.step(rig.service.recover_all)  # the agent that answered
    assert report is not None and report.clean, report
    assert_others_recovered(rig, report, victim.vm)
    assert rig.active() == {vol(2)}
    assert rig.violations() == []
