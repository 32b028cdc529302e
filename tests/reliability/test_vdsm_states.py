"""No metadata vdsm 4.50 can write leaves a drive that no changeCD and no recovery can use.

vdsm 4.50 nests a pending change in the drive's one entry. Besides the states our flows
write, it writes two more, and the engine's ids reach its metadata unchecked:

* ``<change><state>ejecting</state></change>`` in an entry without a PDIV: the eject of a
  CD loaded by path (its fixture ``EJECTING_CD_NO_PDIV_METADATA_XML``);
* a ``loading`` change naming the very CD the entry names (the engine loading it again);
* anything the engine sent as ids (its tests use ``pool-id``, ``volume-id``).

Each is run through the simulator, as an engine developer would, in both encodings of
what we write; the promises are checked on the final host.
"""

from __future__ import annotations

from typing import Any

import pytest
from ovirt_cdrom.simulator import report, runner
from ovirt_cdrom.simulator.scenario import parse_document
from rig import DOMAIN, legacy_path, vm_id, volume

SD = DOMAIN
VM = str(vm_id("vdsm-states"))
A = volume("vdsm-states-A").as_dict()
B = volume("vdsm-states-B").as_dict()
ISO = legacy_path("fedora")
ENCODINGS = ["design", "vdsm-4.50"]


def pdiv(volume: dict[str, str]) -> str:
    return "".join(f"<ovirt-vm:{k}>{volume[k]}</ovirt-vm:{k}>" for k in sorted(volume))


def block(*devices: str) -> str:
    return ('<ovirt-vm:vm xmlns:ovirt-vm="http://ovirt.org/vm/1.0">'
            "<ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>"
            + "".join(devices) + "</ovirt-vm:vm>")


def device(name: str, body: str) -> str:
    return f'<ovirt-vm:device devtype="disk" name="{name}">{body}</ovirt-vm:device>'


def change(state: str, body: str = "") -> str:
    return f"<ovirt-vm:change><ovirt-vm:state>{state}</ovirt-vm:state>{body}</ovirt-vm:change>"


EJECTING_NO_PDIV = device("sdc", change("ejecting"))  # vdsm's own fixture, as it writes it
RELOADING_A = device("sdc", pdiv(A) + change("loading", pdiv(A)))
FAKE_IDS = {"poolID": "pool-id", "domainID": "domain-id", "imageID": "image-id",
            "volumeID": "volume-id"}


def simulate(metadata_xml: str, drives: list[dict[str, Any]], steps: list[dict[str, Any]],
             encoding: str, volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    scenario = {"metadata_encoding": encoding, "files": [ISO],
                "volumes": volumes or [{**A, "active": False}, {**B, "active": False}],
                "vms": [{"id": VM, "metadata_xml": metadata_xml, "drives": drives}],
                "steps": steps}
    (parsed,), _many = parse_document(scenario)
    return report.scenario_json(runner.run(parsed))


def change_cd(volume: dict[str, str] | None, index: int = 2) -> dict[str, Any]:
    spec = None if volume is None else {"device": "cdrom", **volume}
    return {"changeCD": {"vmID": VM, "cdromspec": {"iface": "sata", "index": str(index),
                                                   "drive_spec": spec}}}


def sdc(out: dict[str, Any], name: str = "sdc") -> dict[str, Any]:
    drive: dict[str, Any] = out["final"]["vms"][VM]["drives"][name]
    return drive


def settled(volume: dict[str, str] | None) -> list[dict[str, Any]]:
    return [{"state": None, "pdiv": volume}]


def assert_kept(out: dict[str, Any]) -> None:
    assert all(step["ok"] for step in out["steps"]), out["steps"]
    assert out["final"]["promises"] == {"ok": True, "violations": []}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("loaded", [None, ISO], ids=["empty-tray", "cd-loaded-by-path"])
def test_vdsm_eject_marker_without_pdiv_is_settled_by_recovery(
        encoding: str, loaded: str | None) -> None:
    out = simulate(block(EJECTING_NO_PDIV), [{"iface": "sata", "index": 2, "loaded": loaded}],
                   [{"recover": {}}, change_cd(A), change_cd(None)], encoding)
    assert_kept(out)
    assert out["steps"][0]["recovered"][0]["case"] == "eject.3"
    assert sdc(out)["metadata"] == settled(None)
    assert sdc(out)["source"] is None


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_change_on_a_drive_with_vdsm_eject_marker_goes_ahead(encoding: str) -> None:
    out = simulate(block(EJECTING_NO_PDIV), [{"iface": "sata", "index": 2, "loaded": None}],
                   [change_cd(B)], encoding)
    assert_kept(out)
    assert sdc(out)["metadata"] == settled(B)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("in_tray", [True, False], ids=["tray-holds-it", "tray-empty"])
def test_vdsm_loading_the_cd_it_already_names_is_settled_from_the_tray(
        encoding: str, in_tray: bool) -> None:
    out = simulate(block(RELOADING_A),
                   [{"iface": "sata", "index": 2, "loaded": A if in_tray else None}],
                   [{"recover": {}}], encoding, volumes=[{**A, "active": True}])
    assert_kept(out)
    assert sdc(out)["metadata"] == settled(A if in_tray else None)
    assert out["final"]["volumes"][0]["active"] is in_tray


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unreadable_entries_take_the_tray_as_the_truth_and_spare_the_other_drive(
        encoding: str) -> None:
    """vdsm stores what the engine sends: ids that are not UUIDs make sdc's entry
    unreadable. Recovery keeps the CD in the tray (it is named clearly), and sdd, whose
    eject was interrupted, recovers as usual."""
    sdc_entry = device("sdc", pdiv(A) + change("loading", pdiv(FAKE_IDS)))
    sdd_entry = device("sdd", pdiv(B) + change("ejecting"))
    out = simulate(block(sdc_entry, sdd_entry),
                   [{"iface": "sata", "index": 2, "loaded": A},
                    {"iface": "sata", "index": 3, "loaded": None}],
                   [{"recover": {}}, change_cd(None), change_cd(B, index=2)], encoding,
                   volumes=[{**A, "active": True}, {**B, "active": True}])
    assert_kept(out)
    cases = {d["drive"]: d["case"] for d in out["steps"][0]["recovered"]}
    assert cases == {"sdc": "unreadable", "sdd": "eject.2"}
    assert sdc(out)["metadata"] == settled(B)
    assert sdc(out, "sdd")["metadata"] == settled(None)
    assert [v["active"] for v in out["final"]["volumes"]] == [False, True]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_partial_pdiv_names_no_volume_and_blocks_nothing(encoding: str) -> None:
    entry = device("sdc", f"<ovirt-vm:domainID>{SD}</ovirt-vm:domainID>")
    out = simulate(block(entry), [{"iface": "sata", "index": 2, "loaded": ISO}],
                   [change_cd(A)], encoding)
    assert_kept(out)
    assert sdc(out)["metadata"] == settled(A)
