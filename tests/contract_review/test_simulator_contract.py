"""Black-box probes of ``ovirt-cdrom simulate`` against its public contract (issue 3's
format, and issue 12's named fault points).

Written as an acceptance reviewer would: scenario files in exactly the documented format
(drive index as int and as string, ``loaded: null``, ``metadata`` entries with null
``state``/``pdiv``, vdsm 4.50's nested ``<ovirt-vm:change>``, both fault effects, crashes
at numbered and at named points, lists, stdin, JSON), the report's keys and value shapes,
and the exit codes. Ids are made from names (``tests/rig.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ovirt_cdrom.cli import main
from rig import vm_id, volume

VM = str(vm_id("probe"))
NS = "http://ovirt.org/vm/1.0"


def vol(n: int) -> dict[str, str]:
    return volume(f"probe-{n}").as_dict()


def path_of(v: dict[str, str]) -> str:
    return f"/rhev/data-center/mnt/blockSD/{v['domainID']}/images/{v['imageID']}/{v['volumeID']}"


def change(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"changeCD": {"vmID": VM, "cdromspec": spec}, **extra}


def scenario(steps: list[dict[str, Any]], *, loaded: Any = None, index: Any = 2,
             metadata: Any = None, metadata_xml: str | None = None,
             volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    drive: dict[str, Any] = {"iface": "sata", "index": index, "loaded": loaded}
    if metadata is not None:
        drive["metadata"] = metadata
    vm: dict[str, Any] = {"id": VM, "migrating": False, "drives": [drive]}
    if metadata_xml is not None:
        vm["metadata_xml"] = metadata_xml
    return {"name": "probe", "volumes": volumes if volumes is not None else
            [{**vol(1), "active": False}, vol(2)], "vms": [vm], "steps": steps}


def simulate(doc: object, capsys: pytest.CaptureFixture[str], *flags: str,
             tmp_path: Path | None = None, as_yaml: bool = True) -> tuple[int, Any, str]:
    assert tmp_path is not None
    f = tmp_path / ("s.yaml" if as_yaml else "s.json")
    f.write_text(yaml.safe_dump(doc) if as_yaml else json.dumps(doc))
    code = main(["simulate", str(f), "--json", *flags])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else out), err


def sdc(report: dict[str, Any]) -> dict[str, Any]:
    drive: dict[str, Any] = report["final"]["vms"][VM]["drives"]["sdc"]
    return drive


def active(report: dict[str, Any]) -> set[str]:
    return {v["imageID"] for v in report["final"]["volumes"] if v["active"]}


# --- Report shape --------------------------------------------------------------------------


def check_shape(report: dict[str, Any]) -> None:
    assert {"name", "steps", "final"} <= set(report)
    for step in report["steps"]:
        assert {"op", "ok", "injected", "crashed", "error"} <= set(step)
        assert step["op"] in ("changeCD", "recover")
        assert all(isinstance(step[k], bool) for k in ("ok", "injected", "crashed"))
        if step["crashed"]:
            assert step["ok"] is False and step["error"] is None
        elif step["ok"]:
            assert step["error"] is None
        else:
            assert set(step["error"]) >= {"code", "name", "message"}
            assert isinstance(step["error"]["code"], int)
    assert {"vms", "volumes"} <= set(report["final"])
    for vm in report["final"]["vms"].values():
        assert isinstance(vm["metadata_xml"], str)
        assert vm["metadata_xml"].startswith("<ovirt-vm:vm")
        for drive in vm["drives"].values():
            assert drive["source"] is None or isinstance(drive["source"], str)
            for entry in drive["metadata"]:
                assert set(entry) >= {"state", "pdiv"}
                assert entry["state"] in (None, "loading", "ejecting")
                assert entry["pdiv"] is None or set(entry["pdiv"]) == {
                    "poolID", "domainID", "imageID", "volumeID"}
    for v in report["final"]["volumes"]:
        assert set(v) >= {"poolID", "domainID", "imageID", "volumeID", "active"}
        assert isinstance(v["active"], bool)


def test_the_issues_example_steps_in_order(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    doc = scenario([
        change({"iface": "sata", "index": 2, "drive_spec": vol(1)}),
        change({"iface": "sata", "index": "2", "drive_spec": {"device": "cdrom", **vol(2)}}),
        change({"iface": "sata", "index": 2, "drive_spec": None}),
        change({"iface": "sata", "index": 2, "path": "/iso/x.iso"}),
        {"recover": {}},
    ], loaded=None, index="2")
    code, report, _ = simulate(doc, capsys, tmp_path=tmp_path)
    assert code == 0
    check_shape(report)
    assert [s["ok"] for s in report["steps"]] == [True] * 5
    assert [s["injected"] for s in report["steps"]] == [False] * 5
    assert sdc(report)["source"] == "/iso/x.iso"
    assert active(report) == set()


LOAD_B = {"iface": "sata", "index": "2", "drive_spec": vol(2)}


def load_point(key: str, form: str, capsys: pytest.CaptureFixture[str],
               tmp_path: Path) -> dict[str, Any]:
    """``fail_at``/``crash_at`` the load of B over A, named, or by the number a user reads
    off a --trace run of the same step."""
    if form == "named":
        return {key: {"call": "hypervisor.load"}}
    code, report, err = simulate(scenario([change(LOAD_B)], loaded=vol(1)), capsys, "--trace",
                                 tmp_path=tmp_path)
    assert code == 0, err
    number = next(t["call"] for t in report["steps"][0]["trace"]
                  if (t["port"], t["method"]) == ("hypervisor", "load"))
    return {f"{key}_call": number}


@pytest.mark.parametrize("form", ["named", "numbered"])
@pytest.mark.parametrize("effect", ["before", "after"])
def test_a_failed_media_change_keeps_the_promise_for_both_effects(
        effect: str, form: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    point = load_point("fail_at", form, capsys, tmp_path)
    doc = scenario([change(LOAD_B, **point, fail_effect=effect)], loaded=vol(1))
    code, report, _ = simulate(doc, capsys, "--trace", tmp_path=tmp_path)
    assert code == 0
    check_shape(report)
    step = report["steps"][0]
    assert step["injected"] is True and step["crashed"] is False
    (hit,) = [t for t in step["trace"] if t["outcome"].startswith("injected")]
    assert (hit["port"], hit["method"]) == ("hypervisor", "load")
    if form == "named":
        assert step["fail_at"] == {"call": "hypervisor.load", "occurrence": 1}
    if effect == "before":
        assert step["ok"] is False
        assert (step["error"]["code"], step["error"]["name"]) == (41, "ChangeDiskFailed")
        assert sdc(report)["source"] == path_of(vol(1))
        assert sdc(report)["metadata"] == [{"state": None, "pdiv": vol(1)}]
        assert active(report) == {vol(1)["imageID"]}
    else:  # a timeout that took effect: the call succeeds and says so
        assert step["ok"] is True and step["error"] is None
        assert sdc(report)["source"] == path_of(vol(2))
        assert sdc(report)["metadata"] == [{"state": None, "pdiv": vol(2)}]
        assert active(report) == {vol(2)["imageID"]}


def test_injection_beyond_the_steps_calls_is_not_injected(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eject, insert = ({"iface": "sata", "index": 2, "drive_spec": None},
                     {"iface": "sata", "index": 2, "drive_spec": vol(2)})
    doc = scenario([change(eject, fail_at_call=50),
                    change(insert, crash_at_call=50),
                    change(eject, fail_at={"call": "hypervisor.load"}),       # an eject loads
                    change(insert, crash_at={"call": "hypervisor.load",       # nothing; an
                                             "occurrence": 2})],              # insert, once
                   loaded=vol(1))
    code, report, _ = simulate(doc, capsys, tmp_path=tmp_path)
    assert code == 0
    assert [(s["ok"], s["injected"], s["crashed"]) for s in report["steps"]] == [
        (True, False, False)] * 4


def test_a_crash_at_a_named_call_then_recover(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's ``crash_at: {call: metadata.write, occurrence: 2}``: a change dies just
    before its second metadata write, after the tray switched; recovery keeps the new CD."""
    doc = scenario([change(LOAD_B, crash_at={"call": "metadata.write", "occurrence": 2}),
                    {"recover": {}}], loaded=vol(1))
    code, report, _ = simulate(doc, capsys, "--trace", tmp_path=tmp_path)
    assert code == 0
    check_shape(report)
    crash, recover = report["steps"]
    assert (crash["ok"], crash["injected"], crash["crashed"], crash["error"]) == (
        False, True, True, None)
    assert [t["outcome"] for t in crash["trace"]
            if (t["port"], t["method"]) == ("metadata", "write")] == ["ok", "crash"]
    assert recover["ok"] is True
    assert sdc(report)["source"] == path_of(vol(2))
    assert sdc(report)["metadata"] == [{"state": None, "pdiv": vol(2)}]
    assert active(report) == {vol(2)["imageID"]}


@pytest.mark.parametrize("form", ["named", "numbered"])
def test_crash_then_recover_on_a_fresh_service(form: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A crash just before the media change: recovery keeps the old CD."""
    point = load_point("crash_at", form, capsys, tmp_path)
    doc = scenario([change(LOAD_B, **point), {"recover": {}}], loaded=vol(1))
    code, report, _ = simulate(doc, capsys, "--trace", tmp_path=tmp_path)
    assert code == 0
    check_shape(report)
    crash, recover = report["steps"]
    assert (crash["ok"], crash["injected"], crash["crashed"], crash["error"]) == (
        False, True, True, None)
    assert [(t["port"], t["method"]) for t in crash["trace"] if t["outcome"] == "crash"] == [
        ("hypervisor", "load")]
    assert recover["ok"] is True
    assert sdc(report)["metadata"] == [{"state": None, "pdiv": vol(1)}]
    assert active(report) == {vol(1)["imageID"]}


def test_a_recover_step_whose_first_call_fails_is_an_outcome_not_an_internal_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for effect in ("before", "after"):
        doc = scenario([{"recover": {}, "fail_at_call": 1, "fail_effect": effect},
                        {"recover": {}}], loaded=vol(1))
        code, report, err = simulate(doc, capsys, tmp_path=tmp_path)
        assert code == 0, err
        check_shape(report)
        failed, again = report["steps"]
        assert failed["ok"] is False and failed["injected"] is True
        assert failed["error"]["code"] == 100
        assert again["ok"] is True


def test_metadata_entries_with_null_state_and_pdiv(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # The design's insert, literally: the empty entry stays, a loading entry is added.
    doc = scenario([{"recover": {}}], loaded=None,
                   metadata=[{"state": None, "pdiv": None},
                             {"state": "loading", "pdiv": vol(1)}],
                   volumes=[{**vol(1), "active": True}])
    code, report, err = simulate(doc, capsys, tmp_path=tmp_path)
    assert code == 0, err
    check_shape(report)
    assert report["steps"][0]["ok"] is True
    assert sdc(report)["source"] is None
    assert sdc(report)["metadata"] == [{"state": None, "pdiv": None}]
    assert active(report) == set()


@pytest.mark.parametrize("loaded_at_crash", [True, False])
def test_vdsm_450_nested_change_is_read_and_recovered(
        loaded_at_crash: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def pdiv(v: dict[str, str]) -> str:
        return "".join(f"<ovirt-vm:{k}>{v[k]}</ovirt-vm:{k}>" for k in sorted(v))
    xml = (f'<ovirt-vm:vm xmlns:ovirt-vm="{NS}">'
           "<ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>"
           '<ovirt-vm:device mac_address="56:6f:7a:c1:00:01">'
           "<ovirt-vm:network>ovirtmgmt</ovirt-vm:network></ovirt-vm:device>"
           '<ovirt-vm:device devtype="disk" name="sdc"><ovirt-vm:change>'
           f"{pdiv(vol(2))}<ovirt-vm:state>loading</ovirt-vm:state></ovirt-vm:change>"
           f"{pdiv(vol(1))}</ovirt-vm:device></ovirt-vm:vm>")
    keep, gone = (vol(2), vol(1)) if loaded_at_crash else (vol(1), vol(2))
    doc = scenario([{"recover": {}}], loaded=keep, metadata_xml=xml,
                   volumes=[{**vol(1), "active": True}, {**vol(2), "active": True}])
    code, report, err = simulate(doc, capsys, tmp_path=tmp_path, as_yaml=False)
    assert code == 0, err
    check_shape(report)
    assert report["steps"][0]["ok"] is True
    assert sdc(report)["metadata"] == [{"state": None, "pdiv": keep}]
    assert active(report) == {keep["imageID"]}
    assert gone["imageID"] not in {v["imageID"] for v in report["final"]["volumes"]
                                   if v["active"]}
    final_xml = report["final"]["vms"][VM]["metadata_xml"]
    assert "<ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>" in final_xml
    assert 'mac_address="56:6f:7a:c1:00:01"' in final_xml


def test_a_list_from_stdin_via_python_m(tmp_path: Path) -> None:
    one = scenario([change({"iface": "sata", "index": "2", "drive_spec": None})],
                   loaded=vol(1))
    two = {**one, "name": "second"}
    done = subprocess.run([sys.executable, "-m", "ovirt_cdrom", "simulate", "-", "--json"],
                          input=json.dumps([one, two]), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    reports = json.loads(done.stdout)
    assert [r["name"] for r in reports] == ["probe", "second"]
    for r in reports:
        check_shape(r)
        assert sdc(r)["source"] is None


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d["vms"][0]["drives"][0].update(index="two"), "vms[0].drives[0].index"),
    (lambda d: d["vms"][0].update(id="../etc"), "vms[0].id"),
    (lambda d: d["steps"][0].update(fail_effect="during"), "steps[0].fail_effect"),
    (lambda d: d["steps"][0].update(crash_at_call=0), "steps[0].crash_at_call"),
    (lambda d: d["vms"][0]["drives"][0].update(metadata=[{"state": "busy", "pdiv": None}]),
     "vms[0].drives[0].metadata[0].state"),
    (lambda d: d["steps"][0]["changeCD"]["cdromspec"]["drive_spec"].update(volumeID="x"),
     "steps[0].changeCD.cdromspec.drive_spec.volumeID"),
    (lambda d: d["steps"][0].update(fail_at_call=None, fail_at={"call": "hypervisor.mount"}),
     "steps[0].fail_at.call"),
    (lambda d: d["steps"][0].update(
        fail_at_call=None, crash_at={"call": "metadata.write", "occurrence": 0}),
     "steps[0].crash_at.occurrence"),
    (lambda d: d["steps"][0].update(crash_at={"call": "metadata.write"}),  # and fail_at_call
     "steps[0].crash_at: a step carries one of"),
])
def test_an_invalid_file_exits_2_naming_the_field(
        mutate: Any, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = scenario([change({"iface": "sata", "index": 2, "drive_spec": vol(2)},
                           fail_at_call=1)], loaded=vol(1))
    mutate(doc)
    code, out, err = simulate(doc, capsys, tmp_path=tmp_path)
    assert code == 2
    assert out == ""
    assert field in err


def _alias_bomb(levels: int = 8) -> str:
    lines = ["steps:", "  - changeCD:", f"      vmID: {VM}", "      cdromspec:",
             "        iface: sata", "        index: 2", "        drive_spec: null",
             "        a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"        a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]"
              for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("name", "text"), [
    ("alias-bomb.yaml", _alias_bomb()),
    ("deep.json", "[" * 100_000 + "]" * 100_000),
    ("deep.yaml", "steps: " + "[" * 100_000 + "]" * 100_000),
    ("deep-map.yaml", "steps: " + "{a: " * 50_000 + "}" * 50_000),
], ids=["alias-bomb", "deep-json", "deep-yaml", "deep-yaml-map"])
def test_hostile_files_are_invalid_not_a_hang_or_a_crash(name: str, text: str,
                                                         tmp_path: Path) -> None:
    f = tmp_path / name
    f.write_text(text)
    # A subprocess: libyaml used to overflow the C stack (a segfault) on deep nesting.
    done = subprocess.run([sys.executable, "-m", "ovirt_cdrom", "simulate", str(f), "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stdout == ""
    assert "invalid scenario" in done.stderr


@pytest.mark.parametrize("name", ["huge.json", "huge.yaml"])
def test_an_integer_past_pythons_digit_limit_is_an_invalid_file(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digits = "9" * 5000
    f = tmp_path / name
    if name.endswith(".json"):
        f.write_text(f'{{"steps": [], "vms": [{{"id": "{VM}", "drives": '
                     f'[{{"iface": "sata", "index": {digits}}}]}}]}}')
    else:
        f.write_text(f"steps: []\nvms: [{{id: {VM}, drives: "
                     f"[{{iface: sata, index: {digits}}}]}}]\n")
    assert main(["simulate", str(f), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "invalid scenario" in err
