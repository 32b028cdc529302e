"""Random sequences of CD-ROM operations, with faults and crashes anywhere, over one host.

Several VMs share a few ISO volumes; each step is an insert, eject, change, legacy path,
legacy eject or recovery, optionally with one or two failing port calls (either effect)
and/or a crash at any call, which lands inside compensation or recovery as often as in the
operation itself. A crash restarts the agent: a fresh service over the same host, possibly
writing the other metadata encoding.

Checked at every step: no VM holds an inactive volume, metadata that is not ours is
unchanged, every changeCD is atomic (error: old CD; success: the requested CD; a crash or
"outcome unknown": one of the two), and recovery never changes what a VM holds. After
every recovery in which no fault was injected: the host is consistent (no marker, metadata
names exactly what each VM holds, nothing active that no VM holds).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from ovirt_cdrom.adapters.faults import SimulatedCrash
from ovirt_cdrom.adapters.memory.invariants import violations
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain.errors import CdromError

from .faults import Faults, count, faults
from .harness import FIGURES, Rig, build_rig, expected_tray, spec, unrecorded_active

EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "120"))
STEPS = int(os.environ.get("RELIABILITY_STEPS", "30"))

SUCCESS: dict[str, Any] = {"vmList": {}}

cds = st.one_of(
    st.tuples(st.just("volume"), st.integers(0, 3)),   # 3 is a volume storage lacks
    st.just(("eject",)),
    st.tuples(st.just("path"), st.integers(0, 2)),     # 2 is a file that does not exist
    st.just(("path-eject",)),
)
initial_cds = st.sampled_from([{}, {0: 0}, {0: 0, 1: 0}, {0: 1, 2: 0, 3: 1}])


def check_change(rig: Rig, drive_no: int, target: tuple[Any, ...], plan: Faults,
                 encoding_after_crash: Encoding) -> None:
    """One changeCD step and its atomicity check; shared with the regression tests."""
    drive = rig.drives[drive_no]
    before, wanted = rig.tray(drive), expected_tray(target, rig)
    settled_before = violations(rig.host, rig.baseline, settled=True)
    plan.arm(rig.plan)
    FIGURES["state machine: steps"] += 1
    try:
        answer = rig.api.changeCD(str(drive.vm), spec(drive, target, rig))
    except SimulatedCrash:
        count(rig.plan, "state machine")
        rig.restart(encoding_after_crash)
        assert rig.tray(drive) in (before, wanted)
        return
    faults_injected, _ = count(rig.plan, "state machine")
    rig.plan.reset()
    now = rig.tray(drive)
    if not faults_injected and not settled_before:
        # A fault-free call (answered success or a plain error) on a settled host leaves
        # it settled: no marker, nothing leaked, metadata names what the VM holds.
        FIGURES["state machine: fault-free changes checked settled"] += 1
        found = violations(rig.host, rig.baseline, settled=True)
        assert not found, f"{answer}: {found}"
    if answer == SUCCESS:
        assert now == wanted, f"success, but the tray holds {now}, not {wanted}"
    elif answer["code"] == 41 and "outcome unknown" in answer["message"]:
        FIGURES["state machine: outcome unknown answers"] += 1
        assert now in (before, wanted)
    else:
        assert now == before, f"{answer}, but the tray holds {now}, not the old {before}"


def check_recover(rig: Rig, plan: Faults, encoding_after_crash: Encoding) -> bool:
    """One recover_all step; True when it ran to the end with no fault injected."""
    trays = {str(d.key): rig.tray(d) for d in rig.drives}
    plan.arm(rig.plan)
    FIGURES["state machine: steps"] += 1
    try:
        report = rig.service.recover_all()
    except SimulatedCrash:
        count(rig.plan, "state machine")
        rig.restart(encoding_after_crash)
        return False
    except CdromError:
        # The VMs could not even be listed: a typed error, and nothing was done.
        faults_injected, _ = count(rig.plan, "state machine")
        assert faults_injected, "recover_all failed with no fault injected"
        rig.plan.reset()
        return False
    finally:
        assert {str(d.key): rig.tray(d) for d in rig.drives} == trays, \
            "recovery changed what a VM holds"
    faults_injected, _ = count(rig.plan, "state machine")
    rig.plan.reset()
    if faults_injected:
        return False
    FIGURES["state machine: fault-free recoveries checked settled"] += 1
    found = violations(rig.host, rig.baseline, settled=True)
    assert not found, found
    assert report.clean, report
    return True


class CdromHost(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rig: Rig | None = None

    @initialize(encoding=st.sampled_from(list(Encoding)), loaded=initial_cds)
    def start(self, encoding: Encoding, loaded: dict[int, int]) -> None:
        self.rig = build_rig(encoding=encoding, loaded=loaded)
        FIGURES["state machine: generated sequences"] += 1

    @precondition(lambda self: self.rig is not None)
    @rule(drive=st.integers(0, 3), cd=cds, plan=faults,
          encoding_after_crash=st.sampled_from(list(Encoding)))
    def change_cd(self, drive: int, cd: tuple[Any, ...], plan: Faults,
                  encoding_after_crash: Encoding) -> None:
        assert self.rig is not None
        check_change(self.rig, drive, cd, plan, encoding_after_crash)

    @precondition(lambda self: self.rig is not None)
    @rule(plan=faults, encoding_after_crash=st.sampled_from(list(Encoding)))
    def recover_all(self, plan: Faults, encoding_after_crash: Encoding) -> None:
        assert self.rig is not None
        check_recover(self.rig, plan, encoding_after_crash)

    @precondition(lambda self: self.rig is not None)
    @rule(encoding=st.sampled_from(list(Encoding)))
    def restart(self, encoding: Encoding) -> None:
        """The agent restarts between operations (a crash at no call in particular)."""
        assert self.rig is not None
        self.rig.restart(encoding)

    @invariant()
    def nothing_held_inactive_nothing_else_touched(self) -> None:
        if self.rig is None:
            return
        found = violations(self.rig.host, self.rig.baseline, settled=False)
        found += unrecorded_active(self.rig)
        assert not found, found

    def teardown(self) -> None:
        """Every sequence ends with a fault-free recovery, which must leave it consistent."""
        if self.rig is not None:
            assert check_recover(self.rig, Faults(), Encoding.DESIGN)


CdromHost.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestCdromHost = CdromHost.TestCase
