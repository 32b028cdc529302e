"""Failing examples the reliability tests found, kept as explicit regression tests."""

from __future__ import annotations

from ovirt_cdrom.adapters.memory.invariants import violations
from ovirt_cdrom.adapters.metadata_xml import Encoding

from .faults import Faults
from .harness import build_rig, spec
from .test_state_machine import check_change, check_recover


def test_huge_integer_vm_id_is_a_typed_error_not_a_crash() -> None:
    """Found by test_hostile_input: logging ``str(vmID)`` of a 5000-digit int raised
    ValueError inside the error path, so an untyped exception escaped changeCD."""
    rig = build_rig()
    d = rig.drives[0]
    answer = rig.api.changeCD(10**5000, spec(d, ("volume", 0), rig))
    assert answer["code"] == 100


def test_missing_volume_leaves_no_loading_marker() -> None:
    """Found by the state machine's fault-free check: a prepare of a volume storage does
    not have left its `loading` marker behind (its teardown failed "does not exist")."""
    rig = build_rig()
    check_change(rig, 0, ("volume", 3), Faults(), Encoding.DESIGN)
    assert violations(rig.host, rig.baseline, settled=True) == []


def test_failing_to_list_vms_makes_recover_all_a_typed_error() -> None:
    """Found by the state machine: a fault at ``vm_ids`` (call 1) makes recover_all raise a
    typed error having done nothing; the next recovery converges."""
    rig = build_rig(loaded={0: 0})
    assert not check_recover(rig, Faults(((1, "before"),)), Encoding.DESIGN)
    assert check_recover(rig, Faults(), Encoding.DESIGN)


def test_crash_inside_compensation_then_upgrade_encoding_converges() -> None:
    """A change whose load fails and whose compensating teardown crashes, the agent
    restarting with the other encoding: recovery converges."""
    rig = build_rig(loaded={0: 0}, encoding=Encoding.VDSM_450)
    # calls: is_migrating, cdrom, read, write, prepare, load (fails), cdrom (read back),
    # teardown (crash)
    check_change(rig, 0, ("volume", 1), Faults(((6, "before"),), crash=8), Encoding.DESIGN)
    assert rig.restarts == 1
    assert check_recover(rig, Faults(), Encoding.DESIGN)
