"""Hypothesis strategies for what goes wrong in one step: faults and crashes at named calls.

A step's faults are the product's: ``{At(call, occurrence): effect}`` and an optional crash
``At``, armed with ``rig.plan.arm(failures=..., crash=...)``. The points are drawn from
:data:`CATALOGUE`: every call (by name and occurrence) that clean steps of a kind make on
the reliability host, in the order they first appear, derived from the steps' own
traces, so that an extra harmless read adds a point instead of moving a fault onto a
different call. A point a step does not reach injects nothing (counted apart).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st
from ovirt_cdrom.adapters.faults import At, Effect, FaultPlan
from ovirt_cdrom.domain.state import Changing, Ejecting, Inserting
from rig import Rig

from .harness import FIGURES, build_rig, points, spec, vol

Faults = tuple[dict[At, Effect], At | None]  # failures and a crash, for one step
NO_FAULT: Faults = ({}, None)


def _catalogue() -> dict[str, tuple[At, ...]]:
    """Every call clean steps make on the reliability host, by kind of step: ``change``
    (each flow, a volume another drive holds, a volume storage lacks, leftovers recovered
    first) and ``recover`` (a running agent, and a restarted one)."""
    rig, drives = build_rig(loaded={0: 0})
    seen: dict[str, dict[At, None]] = {"change": {}, "recover": {}}

    def step(kind: str, run: Callable[[], object]) -> None:
        assert rig.step(run) is not None
        seen[kind].update(dict.fromkeys(points(rig.plan)))

    def change(drive: int, *target: object) -> None:
        d = drives[drive]
        step("change", lambda: rig.api.changeCD(str(d.vm), spec(d, target)))

    change(0, "volume", 1)       # change
    change(1, "volume", 1)       # insert a volume another drive holds
    change(0, "eject")           # eject it: the other drive still holds it
    change(0, "path", 0)         # the legacy route into an empty tray
    change(1, "path", 1)         # ... in place of a volume
    change(0, "path-eject")      # the legacy route's eject
    change(2, "volume", 3)       # a volume storage lacks
    change(2, "volume", 0)
    rig.host.put(drives[2].vm, drives[2].name, None)
    rig.write(drives[2].vm, drives[2].name, Ejecting(vol(0)))
    change(2, "volume", 2)       # leftovers recovered before an insert
    rig.hold(drives[0].vm, vol(0), drives[0].name, state=Changing(vol(0), vol(1)))
    rig.add_volume(vol(1), active=True)
    change(0, "volume", 1)       # leftovers naming two volumes recovered before a change
    rig.write(drives[2].vm, drives[2].name, Changing(vol(2), vol(0)))
    rig.add_volume(vol(0), active=True)
    rig.write(drives[3].vm, drives[3].name, Inserting(vol(1)))
    step("recover", rig.service.recover_all)  # a running agent recovers two drives
    rig.write(drives[3].vm, drives[3].name, Ejecting(vol(1)))
    rig.restart()
    step("recover", rig.service.recover_all)  # a restarted one
    return {kind: tuple(found) for kind, found in seen.items()}


CATALOGUE = _catalogue()


def count(plan: FaultPlan, prefix: str) -> tuple[int, bool]:
    """Add what the plan injected to the figures; return (faults, crashed)."""
    faults = sum(1 for t in plan.trace if t.outcome.startswith("injected failure"))
    crashed = any(t.outcome == "crash" for t in plan.trace)
    FIGURES[f"{prefix}: faults injected"] += faults
    FIGURES[f"{prefix}: crash points hit"] += crashed
    if faults >= 2:
        FIGURES[f"{prefix}: steps with two faults"] += 1
    if faults and crashed:
        FIGURES[f"{prefix}: steps with a fault then a crash"] += 1
    return faults, crashed


_effects = st.sampled_from(("before", "after"))


def _fail(*failures: tuple[At, Effect], crash: At | None = None) -> Faults:
    return dict(failures), crash


def faults(kind: str) -> st.SearchStrategy[Faults]:
    """What goes wrong in a step of ``kind`` (``change``, ``recover``): nothing, one or
    two faults, a crash, a fault then a crash, two faults then a crash; points drawn from
    the kind's catalogue, a later fault or crash at a point later in it."""
    catalogue = CATALOGUE[kind]
    point = st.sampled_from(catalogue)

    def ordered(n: int) -> st.SearchStrategy[list[At]]:
        return st.lists(st.integers(0, len(catalogue) - 1), min_size=n, max_size=n,
                        unique=True).map(lambda picks: [catalogue[i] for i in sorted(picks)])

    return st.one_of(
        st.just(NO_FAULT),
        st.builds(lambda at, e: _fail((at, e)), point, _effects),
        st.builds(lambda ats, e1, e2: _fail((ats[0], e1), (ats[1], e2)),
                  ordered(2), _effects, _effects),
        st.builds(lambda at: _fail(crash=at), point),
        st.builds(lambda ats, e: _fail((ats[0], e), crash=ats[1]), ordered(2), _effects),
        st.builds(lambda ats, e1, e2: _fail((ats[0], e1), (ats[1], e2), crash=ats[2]),
                  ordered(3), _effects, _effects))


def arm(rig: Rig, step: Faults) -> None:
    """Arm the rig's plan for its next step."""
    failures, crash_at = step
    rig.plan.arm(failures=failures, crash=crash_at)
