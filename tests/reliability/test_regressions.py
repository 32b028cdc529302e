"""Failing examples the reliability tests found, kept as explicit regression tests.

Each fault is addressed by the call it means, and each test checks that the call was
reached, so that a change in the order of calls cannot move it onto another call.
"""

from __future__ import annotations

from ovirt_cdrom.adapters.faults import At
from ovirt_cdrom.adapters.metadata_xml import Encoding

from .faults import NO_FAULT
from .harness import build_rig, spec
from .test_state_machine import check_change, check_recover


def test_huge_integer_vm_id_is_a_typed_error_not_a_crash() -> None:
    """Found by test_hostile_input: logging ``str(vmID)`` of a 5000-digit int raised
    ValueError inside the error path, so an untyped exception escaped changeCD."""
    rig, drives = build_rig()
    answer = rig.step(lambda: rig.api.changeCD(10**5000, spec(drives[0], ("volume", 0))))
    assert answer is not None and answer["code"] == 100


def test_missing_volume_leaves_no_loading_marker() -> None:
    """Found by the state machine's fault-free check: a prepare of a volume storage does
    not have left its `loading` marker behind (its teardown failed "does not exist")."""
    rig, drives = build_rig()
    check_change(rig, drives[0], ("volume", 3), NO_FAULT, Encoding.DESIGN)
    assert "volumes.prepare" in rig.calls()
    assert rig.violations(settled=True) == []


def test_failing_to_list_vms_makes_recover_all_a_typed_error() -> None:
    """Found by the state machine: a fault at listing the VMs makes recover_all raise a
    typed error having done nothing; the next recovery converges."""
    rig, drives = build_rig(loaded={0: 0})
    assert not check_recover(rig, drives, ({At("hypervisor.vm_ids"): "before"}, None),
                             Encoding.DESIGN)
    assert rig.plan.trace[0].outcome.startswith("injected failure")
    assert check_recover(rig, drives, NO_FAULT, Encoding.DESIGN)


def test_crash_inside_compensation_then_upgrade_encoding_converges() -> None:
    """A change whose load fails and whose compensating teardown crashes, the agent
    restarting with the other encoding: recovery converges."""
    rig, drives = build_rig(loaded={0: 0}, encoding=Encoding.VDSM_450)
    check_change(rig, drives[0], ("volume", 1),
                 ({At("hypervisor.load"): "before"}, At("volumes.teardown")), Encoding.DESIGN)
    assert [(t.call, t.outcome.split(":")[0]) for t in rig.plan.trace
            if t.outcome != "ok"] == [("hypervisor.load", "injected failure (before)"),
                                      ("volumes.teardown", "crash")]
    assert rig.restarts == 1 and rig.encoding is Encoding.DESIGN
    assert check_recover(rig, drives, NO_FAULT, Encoding.DESIGN)
