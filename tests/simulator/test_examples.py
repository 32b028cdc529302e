"""Every shipped example runs through the command, keeps the promises, and shows its story."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ovirt_cdrom.domain.recovery import RECOVERY_TABLE

from .hosts import VM1, VM2, A, B, block_path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def simulate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovirt_cdrom", "simulate", *args],
                          capture_output=True, text=True, input=stdin, timeout=120,
                          check=False)


def reports(path: Path) -> list[dict[str, Any]]:
    done = simulate("--json", str(path))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    return out if isinstance(out, list) else [out]


def sdc(report: dict[str, Any], vm: str = VM1) -> dict[str, Any]:
    drive: dict[str, Any] = report["final"]["vms"][vm]["drives"]["sdc"]
    return drive


def active(report: dict[str, Any], volume: dict[str, str]) -> bool:
    (found,) = [v["active"] for v in report["final"]["volumes"]
                if v["volumeID"] == volume["volumeID"]]
    return bool(found)


def steps(report: dict[str, Any]) -> list[tuple[str, bool, bool, bool, str | None]]:
    return [(s["op"], s["ok"], s["injected"], s["crashed"],
             s["error"]["name"] if s["error"] else None) for s in report["steps"]]


def test_there_are_examples_for_every_flow_and_crash() -> None:
    names = {p.stem for p in FILES}
    assert {"insert", "eject", "change", "legacy-path", "change-crash-before-media-change",
            "change-crash-after-media-change", "eject-crash-after-tray-emptied",
            "vdsm450-pending-change", "shared-iso-eject", "load-timeout-took-effect",
            "recovery-rows"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_runs_and_keeps_the_promises(path: Path) -> None:
    for report in reports(path):
        assert report["final"]["promises"] == {"ok": True, "violations": []}, report["name"]
        assert report["name"]


@pytest.mark.parametrize("path", FILES[:3], ids=lambda p: p.name)
def test_readable_report_of_an_example(path: Path) -> None:
    done = simulate("--trace", str(path))
    assert done.returncode == 0, done.stderr
    assert "Steps" in done.stdout and "Final VMs" in done.stdout
    assert "hypervisor.cdrom" in done.stdout  # --trace shows the port calls
    assert "Promises kept" in done.stdout


def test_examples_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for path in FILES:
        assert path.name in readme


def test_insert() -> None:
    (r,) = reports(EXAMPLES / "insert.yaml")
    assert steps(r) == [("changeCD", True, False, False, None)]
    assert sdc(r)["source"] == block_path(A)
    assert sdc(r)["metadata"] == [{"state": None, "pdiv": A}]
    assert active(r, A)


def test_eject() -> None:
    (r,) = reports(EXAMPLES / "eject.yaml")
    assert sdc(r)["source"] is None
    assert sdc(r)["metadata"] == [{"state": None, "pdiv": None}]
    assert not active(r, A)


def test_change() -> None:
    (r,) = reports(EXAMPLES / "change.yaml")
    assert sdc(r)["source"] == block_path(B)
    assert not active(r, A) and active(r, B)


def test_legacy_path() -> None:
    (r,) = reports(EXAMPLES / "legacy-path.yaml")
    assert steps(r) == [("changeCD", True, False, False, None),
                        ("changeCD", False, False, False, "ImageFileNotFound"),
                        ("changeCD", True, False, False, None)]
    assert r["steps"][1]["error"]["code"] == 13
    assert sdc(r)["source"] is None


def test_legacy_path_replacing_a_volume_tears_it_down() -> None:
    (r,) = reports(EXAMPLES / "legacy-path-replaces-volume.yaml")
    assert sdc(r)["source"] == "/iso/tools.iso"
    assert not active(r, A)


def test_change_crash_before_media_change_recovers_the_old_cd() -> None:
    (r,) = reports(EXAMPLES / "change-crash-before-media-change.yaml")
    assert steps(r) == [("changeCD", False, True, True, None), ("recover", True, False, False,
                                                                  None)]
    assert [d["case"] for d in r["steps"][1]["recovered"]] == ["change.3"]
    assert sdc(r)["source"] == block_path(A)
    assert active(r, A) and not active(r, B)


def test_change_crash_after_media_change_recovers_the_new_cd() -> None:
    (r,) = reports(EXAMPLES / "change-crash-after-media-change.yaml")
    assert [d["case"] for d in r["steps"][1]["recovered"]] == ["change.4"]
    assert sdc(r)["source"] == block_path(B)
    assert sdc(r)["metadata"] == [{"state": None, "pdiv": B}]
    assert not active(r, A) and active(r, B)


def test_eject_crash_after_tray_emptied_tears_the_volume_down() -> None:
    (r,) = reports(EXAMPLES / "eject-crash-after-tray-emptied.yaml")
    assert [d["case"] for d in r["steps"][1]["recovered"]] == ["eject.2"]
    assert sdc(r)["source"] is None and not active(r, A)


def test_vdsm450_pending_change_is_recovered_and_unrelated_metadata_kept() -> None:
    (r,) = reports(EXAMPLES / "vdsm450-pending-change.yaml")
    assert [d["case"] for d in r["steps"][0]["recovered"]] == ["change.4"]
    xml = r["final"]["vms"][VM1]["metadata_xml"]
    for kept in ("<ovirt-vm:clusterVersion>4.7<", 'mac_address="56:6f:7a:c1:00:01"',
                 "<ovirt-vm:leaseOffset type=\"int\">108003328<"):
        assert kept in xml
    assert "ovirt-vm:change" not in xml
    assert sdc(r)["source"] is None and not active(r, A) and not active(r, B)


def test_shared_iso_stays_active_while_another_vm_holds_it() -> None:
    (r,) = reports(EXAMPLES / "shared-iso-eject.yaml")
    assert steps(r)[0] == ("changeCD", True, False, False, None)
    assert sdc(r, VM1)["source"] is None and sdc(r, VM2)["source"] is None
    assert not active(r, A)
    # Replay only the first eject: the volume must stay active for VM2.
    doc = yaml.safe_load((EXAMPLES / "shared-iso-eject.yaml").read_text())
    doc["steps"] = doc["steps"][:1]
    done = simulate("--json", "-", stdin=json.dumps(doc))
    first = json.loads(done.stdout)
    assert sdc(first, VM2)["source"] == block_path(A) and active(first, A)


def test_load_that_timed_out_but_took_effect_succeeds() -> None:
    (r,) = reports(EXAMPLES / "load-timeout-took-effect.yaml")
    assert steps(r) == [("changeCD", True, True, False, None),
                        ("changeCD", False, True, False, "ChangeDiskFailed"),
                        ("recover", True, False, False, None)]
    assert r["steps"][1]["error"]["code"] == 41
    assert sdc(r)["source"] == block_path(B) and active(r, B) and not active(r, A)


def test_recovery_rows_example_covers_every_design_row() -> None:
    runs = reports(EXAMPLES / "recovery-rows.yaml")
    seen = set()
    for r in runs:
        (drive,) = r["steps"][0]["recovered"]
        assert r["name"].startswith(f"recovery {drive['case']}:"), (r["name"], drive)
        assert drive["clean"] and r["steps"][0]["ok"]
        seen.add(drive["case"])
    design_rows = {row.case for row in RECOVERY_TABLE if row.case != "settled"}
    assert seen == design_rows
