"""Random sequences of CD-ROM operations, with faults and crashes anywhere, over one host.

Several VMs share a few ISO volumes; each step is an insert, eject, change, legacy path,
legacy eject or recovery, optionally with one or two failing port calls (either effect)
and/or a crash at a call, named by the call it means (``faults.CATALOGUE``), which lands
inside compensation or recovery as often as in the operation itself. A crash restarts the
agent: a fresh service over the same host, possibly writing the other metadata encoding.

Checked at every step: no VM holds an inactive volume, no active volume goes unrecorded,
metadata that is not ours is unchanged, every changeCD is atomic (error: old CD; success:
the requested CD; a crash or "outcome unknown": one of the two), and recovery never
changes what a VM holds. After every recovery in which no fault was injected: the host is
consistent (no marker, metadata names exactly what each VM holds, nothing active that no
VM holds).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain.errors import CdromError
from rig import SUCCESS, Rig

from .faults import NO_FAULT, Faults, arm, count, faults
from .harness import (
    FIGURES,
    Drive,
    Target,
    broken,
    build_rig,
    expected_tray,
    spec,
    tray,
    trays,
)

EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "120"))
STEPS = int(os.environ.get("RELIABILITY_STEPS", "30"))

cds = st.one_of(
    st.tuples(st.just("volume"), st.integers(0, 3)),   # 3 is a volume storage lacks
    st.just(("eject",)),
    st.tuples(st.just("path"), st.integers(0, 2)),     # 2 is a file that does not exist
    st.just(("path-eject",)),
)
initial_cds = st.sampled_from([{}, {0: 0}, {0: 0, 1: 0}, {0: 1, 2: 0, 3: 1}])


def check_change(rig: Rig, drive: Drive, target: Target, step: Faults,
                 encoding_after_crash: Encoding) -> None:
    """One changeCD step and its atomicity check; shared with the regression tests."""
    before, wanted = tray(rig, drive), expected_tray(target)
    settled_before = rig.violations(settled=True)
    arm(rig, step)
    FIGURES["state machine: steps"] += 1
    answer = rig.change(drive.vm, spec(drive, target), restart_as=encoding_after_crash)
    faults_injected, crashed = count(rig.plan, "state machine")
    now = tray(rig, drive)
    if answer is None:
        assert crashed
        assert now in (before, wanted)
        return
    if not faults_injected and not settled_before:
        # A fault-free call (answered success or a plain error) on a settled host leaves
        # it settled: no marker, nothing leaked, metadata names what the VM holds.
        FIGURES["state machine: fault-free changes checked settled"] += 1
        found = rig.violations(settled=True)
        assert not found, f"{answer}: {found}"
    if answer == SUCCESS:
        assert now == wanted, f"success, but the tray holds {now}, not {wanted}"
    elif answer["code"] == 41 and "outcome unknown" in answer["message"]:
        FIGURES["state machine: outcome unknown answers"] += 1
        assert now in (before, wanted)
    else:
        assert now == before, f"{answer}, but the tray holds {now}, not the old {before}"


def check_recover(rig: Rig, drives: list[Drive], step: Faults,
                  encoding_after_crash: Encoding) -> bool:
    """One recover_all step of the running agent; True when it ran to the end with no
    fault injected."""
    held = trays(rig, drives)
    arm(rig, step)
    FIGURES["state machine: steps"] += 1
    try:
        report = rig.step(rig.service.recover_all, restart_as=encoding_after_crash)
    except CdromError:
        # The VMs could not even be listed: a typed error, and nothing was done.
        faults_injected, _ = count(rig.plan, "state machine")
        assert faults_injected, "recover_all failed with no fault injected"
        return False
    finally:
        assert trays(rig, drives) == held, "recovery changed what a VM holds"
    faults_injected, _ = count(rig.plan, "state machine")
    if report is None or faults_injected:
        return False
    FIGURES["state machine: fault-free recoveries checked settled"] += 1
    found = rig.violations(settled=True)
    assert not found, found
    assert report.clean, report
    return True


class CdromHost(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rig: Rig | None = None
        self.drives: list[Drive] = []

    @initialize(encoding=st.sampled_from(list(Encoding)), loaded=initial_cds)
    def start(self, encoding: Encoding, loaded: dict[int, int]) -> None:
        self.rig, self.drives = build_rig(encoding=encoding, loaded=loaded)
        FIGURES["state machine: generated sequences"] += 1

    @precondition(lambda self: self.rig is not None)
    @rule(drive=st.integers(0, 3), cd=cds, step=faults("change"),
          encoding_after_crash=st.sampled_from(list(Encoding)))
    def change_cd(self, drive: int, cd: Target, step: Faults,
                  encoding_after_crash: Encoding) -> None:
        assert self.rig is not None
        check_change(self.rig, self.drives[drive], cd, step, encoding_after_crash)

    @precondition(lambda self: self.rig is not None)
    @rule(step=faults("recover"), encoding_after_crash=st.sampled_from(list(Encoding)))
    def recover_all(self, step: Faults, encoding_after_crash: Encoding) -> None:
        assert self.rig is not None
        check_recover(self.rig, self.drives, step, encoding_after_crash)

    @precondition(lambda self: self.rig is not None)
    @rule(encoding=st.sampled_from(list(Encoding)))
    def restart(self, encoding: Encoding) -> None:
        """The agent restarts between operations (a crash at no call in particular)."""
        assert self.rig is not None
        self.rig.restart(encoding)

    @invariant()
    def nothing_held_inactive_nothing_unrecorded_nothing_else_touched(self) -> None:
        if self.rig is None:
            return
        found = broken(self.rig, settled=False)
        assert not found, found

    def teardown(self) -> None:
        """Every sequence ends with a fault-free recovery, which must leave it consistent."""
        if self.rig is not None:
            assert check_recover(self.rig, self.drives, NO_FAULT, Encoding.DESIGN)


CdromHost.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestCdromHost = CdromHost.TestCase
