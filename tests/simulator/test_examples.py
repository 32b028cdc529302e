"""Every shipped example runs through the command, keeps the promises, and shows its story.

The examples are public and carry their own UUIDs; the tests read them from the files
(:func:`cast`: the volumes ``&fedora`` and ``&debian``, the VMs in order) instead of
copying them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ovirt_cdrom.domain.recovery import RECOVERY_TABLE

from .hosts import block_path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))
PDIV = ("poolID", "domainID", "imageID", "volumeID")


def simulate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovirt_cdrom", "simulate", *args],
                          capture_output=True, text=True, input=stdin, timeout=120,
                          check=False)


def reports(path: Path) -> list[dict[str, Any]]:
    done = simulate("--json", str(path))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    return out if isinstance(out, list) else [out]


@dataclass(frozen=True)
class Cast:
    """An example's ids as its file gives them: its two ISO volumes and its VMs."""

    fedora: dict[str, str]
    debian: dict[str, str]
    vms: tuple[str, ...]


def cast(name: str) -> Cast:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    first = doc[0] if isinstance(doc, list) else doc
    fedora, debian = ({k: v[k] for k in PDIV} for v in first["volumes"][:2])
    return Cast(fedora, debian, tuple(vm["id"] for vm in first["vms"]))


def sdc(report: dict[str, Any], vm: str | None = None) -> dict[str, Any]:
    """The sdc drive of ``vm`` in the final host (default: the scenario's only VM)."""
    vms = report["final"]["vms"]
    if vm is None:
        (vm,) = vms
    drive: dict[str, Any] = vms[vm]["drives"]["sdc"]
    return drive


def active(report: dict[str, Any], volume: dict[str, str]) -> bool:
    (found,) = [v["active"] for v in report["final"]["volumes"]
                if v["volumeID"] == volume["volumeID"]]
    return bool(found)


def steps(report: dict[str, Any]) -> list[tuple[str, bool, bool, bool, str | None]]:
    return [(s["op"], s["ok"], s["injected"], s["crashed"],
             s["error"]["name"] if s["error"] else None) for s in report["steps"]]


def crashed_at(report: dict[str, Any], step: int = 0) -> str:
    """The call a step crashed just before, from its ``--trace`` report."""
    (call,) = [f"{t['port']}.{t['method']}" for t in report["steps"][step]["trace"]
               if t["outcome"] == "crash"]
    return call


def traced(path: Path) -> list[dict[str, Any]]:
    done = simulate("--json", "--trace", str(path))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    return out if isinstance(out, list) else [out]


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
    (r,), c = reports(EXAMPLES / "insert.yaml"), cast("insert.yaml")
    assert steps(r) == [("changeCD", True, False, False, None)]
    assert sdc(r)["source"] == block_path(c.fedora)
    assert sdc(r)["metadata"] == [{"state": None, "pdiv": c.fedora}]
    assert active(r, c.fedora)


def test_eject() -> None:
    (r,), c = reports(EXAMPLES / "eject.yaml"), cast("eject.yaml")
    assert sdc(r)["source"] is None
    assert sdc(r)["metadata"] == [{"state": None, "pdiv": None}]
    assert not active(r, c.fedora)


def test_change() -> None:
    (r,), c = reports(EXAMPLES / "change.yaml"), cast("change.yaml")
    assert sdc(r)["source"] == block_path(c.debian)
    assert not active(r, c.fedora) and active(r, c.debian)


def test_legacy_path() -> None:
    (r,) = reports(EXAMPLES / "legacy-path.yaml")
    assert steps(r) == [("changeCD", True, False, False, None),
                        ("changeCD", False, False, False, "ImageFileNotFound"),
                        ("changeCD", True, False, False, None)]
    assert r["steps"][1]["error"]["code"] == 13
    assert sdc(r)["source"] is None


def test_legacy_path_replacing_a_volume_tears_it_down() -> None:
    name = "legacy-path-replaces-volume.yaml"
    (r,), c = reports(EXAMPLES / name), cast(name)
    assert sdc(r)["source"] == "/iso/tools.iso"
    assert not active(r, c.fedora)


def test_change_crash_before_media_change_recovers_the_old_cd() -> None:
    name = "change-crash-before-media-change.yaml"
    (r,), c = traced(EXAMPLES / name), cast(name)
    assert steps(r) == [("changeCD", False, True, True, None), ("recover", True, False, False,
                                                                  None)]
    assert crashed_at(r) == "hypervisor.load"
    assert [d["case"] for d in r["steps"][1]["recovered"]] == ["change.3"]
    assert sdc(r)["source"] == block_path(c.fedora)
    assert active(r, c.fedora) and not active(r, c.debian)


def test_change_crash_after_media_change_recovers_the_new_cd() -> None:
    name = "change-crash-after-media-change.yaml"
    (r,), c = traced(EXAMPLES / name), cast(name)
    assert crashed_at(r) == "volumes.teardown"
    assert [d["case"] for d in r["steps"][1]["recovered"]] == ["change.4"]
    assert sdc(r)["source"] == block_path(c.debian)
    assert sdc(r)["metadata"] == [{"state": None, "pdiv": c.debian}]
    assert not active(r, c.fedora) and active(r, c.debian)


def test_eject_crash_after_tray_emptied_tears_the_volume_down() -> None:
    name = "eject-crash-after-tray-emptied.yaml"
    (r,), c = traced(EXAMPLES / name), cast(name)
    assert crashed_at(r) == "volumes.teardown"
    assert ("hypervisor", "eject", "ok") in {(t["port"], t["method"], t["outcome"])
                                             for t in r["steps"][0]["trace"]}
    assert [d["case"] for d in r["steps"][1]["recovered"]] == ["eject.2"]
    assert sdc(r)["source"] is None and not active(r, c.fedora)


def test_vdsm450_pending_change_is_recovered_and_unrelated_metadata_kept() -> None:
    name = "vdsm450-pending-change.yaml"
    (r,), c = reports(EXAMPLES / name), cast(name)
    assert [d["case"] for d in r["steps"][0]["recovered"]] == ["change.4"]
    xml = r["final"]["vms"][c.vms[0]]["metadata_xml"]
    for kept in ("<ovirt-vm:clusterVersion>4.7<", 'mac_address="56:6f:7a:c1:00:01"',
                 "<ovirt-vm:leaseOffset type=\"int\">108003328<"):
        assert kept in xml
    assert "ovirt-vm:change" not in xml
    assert sdc(r)["source"] is None and not active(r, c.fedora) and not active(r, c.debian)


def test_shared_iso_stays_active_while_another_vm_holds_it() -> None:
    name = "shared-iso-eject.yaml"
    (r,), c = traced(EXAMPLES / name), cast(name)
    vm1, vm2 = c.vms
    assert steps(r)[0] == ("changeCD", True, False, False, None)
    assert steps(r)[1] == ("changeCD", False, True, True, None)
    assert crashed_at(r, 1) == "volumes.teardown"
    assert sdc(r, vm1)["source"] is None and sdc(r, vm2)["source"] is None
    assert not active(r, c.fedora)
    # Replay only the first eject: the volume must stay active for the second VM.
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    doc["steps"] = doc["steps"][:1]
    done = simulate("--json", "-", stdin=json.dumps(doc))
    first = json.loads(done.stdout)
    assert sdc(first, vm2)["source"] == block_path(c.fedora) and active(first, c.fedora)


def test_load_that_timed_out_but_took_effect_succeeds() -> None:
    name = "load-timeout-took-effect.yaml"
    (r,), c = traced(EXAMPLES / name), cast(name)
    assert steps(r) == [("changeCD", True, True, False, None),
                        ("changeCD", False, True, False, "ChangeDiskFailed"),
                        ("recover", True, False, False, None)]
    # The named point and the numbered one both fail the load, with their effect.
    for step, effect in ((0, "after"), (1, "before")):
        (failed,) = [t for t in r["steps"][step]["trace"] if t["outcome"].startswith("inj")]
        assert (failed["port"], failed["method"]) == ("hypervisor", "load")
        assert failed["outcome"].startswith(f"injected failure ({effect})")
    assert r["steps"][1]["error"]["code"] == 41
    assert sdc(r)["source"] == block_path(c.debian)
    assert active(r, c.debian) and not active(r, c.fedora)


def test_examples_show_both_forms_of_fault_points() -> None:
    """Named points read better and most examples use them; the numbered form keeps
    working, and at least one example shows it."""
    keys = set()
    for path in FILES:
        docs = yaml.safe_load(path.read_text())
        for doc in docs if isinstance(docs, list) else [docs]:
            keys |= {k for step in doc["steps"] for k in step}
    assert {"fail_at", "crash_at", "fail_at_call"} <= keys


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
