"""vdsm's own metadata reader reads every state we write in the ``vdsm-4.50`` encoding.

On a real host vdsm shares the ``<ovirt-vm:vm>`` block with us and builds its VM object
from it with ``vdsm.virt.metadata.Descriptor`` (from the vdsm snapshot beside the
repository). For each flow, the clean run, a crash before each of the port calls the clean
run makes, and a failure of each of them (before it, or after it took effect; a failed
teardown of the old CD leaves the change's markers) are run through the simulator, the
fault addressed by the call it means (``{call, occurrence}``); the block each leaves, and
the block after the recovery that follows, are read by vdsm: it must find exactly one
``sdc`` device, see the CD and the pending change our entries describe, and see every
element that is not ours as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from needs import unavailable
from ovirt_cdrom.simulator import report, runner
from ovirt_cdrom.simulator.scenario import parse_document
from rig import unrelated_metadata, vm_id, volume
from vdsm_snapshot import snapshot, unpack_lib

VM = vm_id("reader").value
A = volume("a").as_dict()
B = volume("b").as_dict()
PDIV_KEYS = ("domainID", "imageID", "poolID", "volumeID")


def block(sdc: dict[str, str] | None) -> str:
    """The VM's block as vdsm writes it (the rig's values of every type, custom
    properties, a NIC, a disk), with the ``sdc`` entry naming ``sdc`` (None: empty)."""
    entry = ('<ovirt-vm:device devtype="disk" name="sdc"/>' if sdc is None else
             '<ovirt-vm:device devtype="disk" name="sdc">'
             + "".join(f"<ovirt-vm:{k}>{sdc[k]}</ovirt-vm:{k}>" for k in PDIV_KEYS)
             + "</ovirt-vm:device>")
    return unrelated_metadata("reader").replace("</ovirt-vm:vm>", f"{entry}</ovirt-vm:vm>")


FLOWS: dict[str, tuple[dict[str, str] | None, dict[str, str] | None]] = {
    "insert": (None, A), "eject": (A, None), "change": (A, B)}
SEEN: list[str] = []
SHAPES: set[tuple[str | None, ...]] = set()


@pytest.fixture(scope="module")
def vdsm_metadata(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """``vdsm.virt.metadata``, imported from the snapshot's own ``lib``."""
    tarball = snapshot()
    if tarball is None or not tarball.is_file():
        unavailable("no vdsm snapshot beside the repository (../shared/vdsm/vdsm-*.tar.gz)")
    lib = unpack_lib(tarball, tmp_path_factory.mktemp("vdsm"))
    sys.path.insert(0, str(lib))
    try:
        from vdsm.virt import metadata  # type: ignore[import-not-found]  # noqa: PLC0415

        assert metadata.__file__.startswith(str(lib)), metadata.__file__
        yield metadata
    finally:
        sys.path.remove(str(lib))
        for name in [n for n in sys.modules if n == "vdsm" or n.startswith("vdsm.")]:
            del sys.modules[name]
    print(f"\nvdsm's Descriptor read {len(SEEN)} blocks we wrote")


def vdsm_view(metadata: ModuleType, block_xml: str) -> dict[str, Any]:
    """What vdsm's Descriptor makes of the block: its values, custom, and devices."""
    desc = metadata.Descriptor.from_xml(
        f'<domain xmlns:ovirt-vm="http://ovirt.org/vm/1.0"><uuid>{VM}</uuid>'
        f"<metadata>{block_xml}</metadata></domain>")
    with desc.device(devtype="disk", name="sdc") as sdc:  # MissingDevice if not unique
        cd = dict(sdc)
    with desc.values() as values:
        kept = dict(values)
    others = [(attrs, data) for attrs, data in desc._devices  # vdsm's own device list
              if attrs.get("name") != "sdc"]
    return {"sdc": cd, "values": kept, "custom": desc.custom, "others": others}


def expected_cd(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The sdc device vdsm must see for our logical entries (the vdsm 4.50 nesting)."""
    states = [e["state"] for e in entries]
    by_state = {e["state"]: e["pdiv"] for e in entries}
    if states == [None]:
        return dict(by_state[None] or {})
    if states == ["loading"]:
        return {"change": {"state": "loading", **by_state["loading"]}}
    if states == ["ejecting"]:
        return {**(by_state["ejecting"] or {}), "change": {"state": "ejecting"}}
    if states == ["ejecting", "loading"]:
        return {**by_state["ejecting"], "change": {"state": "loading", **by_state["loading"]}}
    if states == [None, "ejecting"]:  # switched: the tray holds the first, the old awaits
        return {**by_state[None], "change": {"state": "ejecting", **by_state["ejecting"]}}
    raise AssertionError(f"entries no flow writes: {entries}")


def document(old: dict[str, str] | None, new: dict[str, str] | None,
             step_extra: dict[str, Any], steps: int) -> dict[str, Any]:
    """The flow old -> new with ``step_extra`` injected, then (``steps`` 2) a recovery."""
    spec = None if new is None else {"device": "cdrom", **new}
    return {
        "metadata_encoding": "vdsm-4.50",
        "volumes": [{**A, "active": old == A}, {**B, "active": False}],
        "vms": [{"id": VM, "metadata_xml": block(old),
                 "drives": [{"iface": "sata", "index": 2, "loaded": old}]}],
        "steps": [{"changeCD": {"vmID": VM, "cdromspec": {
            "iface": "sata", "index": "2", "drive_spec": spec}}, **step_extra},
            {"recover": {}}][:steps]}


def run(old: dict[str, str] | None, new: dict[str, str] | None,
        step_extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The host's final state after the change alone, and after the recovery that follows
    (a run stepped one step at a time)."""
    finals = []
    for steps in (1, 2):
        (scenario,), _many = parse_document(document(old, new, step_extra, steps))
        finals.append(report.scenario_json(runner.run(scenario)))
    return finals


def calls_of(flow: str) -> list[dict[str, Any]]:
    """The named point (``{call, occurrence}``) of each port call of the flow's clean run."""
    (scenario,), _many = parse_document(document(*FLOWS[flow], {}, 1))
    (step,) = runner.run(scenario).steps
    return [{"call": c.call, "occurrence": c.occurrence} for c in step.trace]


def cases() -> list[tuple[str, dict[str, Any]]]:
    """Each flow clean, with a crash before each call of its clean run, and with each of
    those calls failing before or after it took effect."""
    out: list[tuple[str, dict[str, Any]]] = []
    for flow in FLOWS:
        points = calls_of(flow)
        out.append((flow, {}))
        out += [(flow, {"crash_at": point}) for point in points]
        out += [(flow, {"fail_at": point, "fail_effect": effect})
                for point in points for effect in ("before", "after")]
    return out


def _id(case: tuple[str, dict[str, Any]]) -> str:
    flow, extra = case
    shown = {k: f"{v['call']}:{v['occurrence']}" if isinstance(v, dict) else v
             for k, v in extra.items()}
    return flow + "".join(f"-{k}={v}" for k, v in shown.items())


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_vdsm_reads_what_each_step_leaves(vdsm_metadata: ModuleType,
                                          case: tuple[str, dict[str, Any]]) -> None:
    flow, extra = case
    old, new = FLOWS[flow]
    before = vdsm_view(vdsm_metadata, block(old))
    for final in run(old, new, extra):
        vm = final["final"]["vms"][VM]
        seen = vdsm_view(vdsm_metadata, vm["metadata_xml"])
        SEEN.append(vm["metadata_xml"])
        SHAPES.add(tuple(e["state"] for e in vm["drives"]["sdc"]["metadata"]))
        assert seen["sdc"] == expected_cd(vm["drives"]["sdc"]["metadata"]), vm["metadata_xml"]
        assert {k: v for k, v in seen.items() if k != "sdc"} == \
            {k: v for k, v in before.items() if k != "sdc"}


def test_every_state_the_flows_write_was_read_by_vdsm() -> None:
    """The cases above (run first, in file order) left every shape of entries the flows
    write: settled, loading, ejecting, and a change (ejecting + loading)."""
    assert {(None,), ("loading",), ("ejecting",), ("ejecting", "loading")} <= SHAPES, SHAPES


def test_vdsm_reads_the_switched_state_as_the_cd_in_the_tray(vdsm_metadata: ModuleType) -> None:
    """The design's state after the tray switched with the old CD still to tear down (its
    recovery rows change.5/6; the flows keep the change's markers instead, D3) is written
    as the CD in the tray with the old one nested as ``ejecting`` (D19)."""
    doc = {
        "metadata_encoding": "vdsm-4.50",
        "volumes": [{**A, "active": True}, {**B, "active": True}],
        "vms": [{"id": VM, "metadata_xml": block(None), "drives": [
            {"iface": "sata", "index": 2, "loaded": B,
             "metadata": [{"state": None, "pdiv": B}, {"state": "ejecting", "pdiv": A}]}]}],
        "steps": []}
    (scenario,), _many = parse_document(doc)
    vm = report.scenario_json(runner.run(scenario))["final"]["vms"][VM]
    assert vdsm_view(vdsm_metadata, vm["metadata_xml"])["sdc"] == {
        **B, "change": {"state": "ejecting", **A}}


def test_the_design_encoding_is_what_vdsm_cannot_read(vdsm_metadata: ModuleType) -> None:
    """Why ``vdsm-4.50`` is the default wherever vdsm shares the block: with the design's
    two ``sdc`` entries vdsm cannot even build its VM object."""
    two = block(A).replace(
        '<ovirt-vm:device devtype="disk" name="sdc">',
        '<ovirt-vm:device devtype="disk" name="sdc" state="loading">'
        + "".join(f"<ovirt-vm:{k}>{B[k]}</ovirt-vm:{k}>" for k in PDIV_KEYS)
        + '</ovirt-vm:device><ovirt-vm:device devtype="disk" name="sdc" state="ejecting">')
    with pytest.raises(vdsm_metadata.MissingDevice):
        vdsm_view(vdsm_metadata, two)
