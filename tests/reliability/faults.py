"""Hypothesis strategies for what goes wrong in one step: faults and crashes by call number."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st
from ovirt_cdrom.adapters.faults import Effect, FaultPlan

from .harness import FIGURES

# Calls one step makes: a change with a recovery first is ~14, a recover_all over the rig
# ~20; numbers beyond the step's calls inject nothing (counted apart).
MAX_CALL = 20


@dataclass(frozen=True)
class Faults:
    """Failing call numbers (each with its effect) and an optional crash, for one step."""

    failures: tuple[tuple[int, Effect], ...] = ()
    crash: int | None = None

    def arm(self, plan: FaultPlan) -> None:
        plan.reset(failures=dict(self.failures), crash_at_call=self.crash)

    def __repr__(self) -> str:
        parts = [f"fail {n} {e}" for n, e in self.failures]
        if self.crash is not None:
            parts.append(f"crash {self.crash}")
        return f"Faults({', '.join(parts) or 'none'})"


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
_calls = st.integers(1, MAX_CALL)

NO_FAULT = Faults()

single = st.builds(lambda n, e: Faults(((n, e),)), _calls, _effects)
double = st.builds(
    lambda n, gap, e1, e2: Faults(((n, e1), (n + gap, e2))),
    _calls, st.integers(1, 8), _effects, _effects)
crash = st.builds(lambda n: Faults(crash=n), _calls)
fault_then_crash = st.builds(
    lambda n, gap, e: Faults(((n, e),), crash=n + gap), _calls, st.integers(1, 8), _effects)
double_then_crash = st.builds(
    lambda n, g1, g2, e1, e2: Faults(((n, e1), (n + g1, e2)), crash=n + g1 + g2),
    _calls, st.integers(1, 6), st.integers(1, 6), _effects, _effects)

faults = st.one_of(st.just(NO_FAULT), single, double, crash, fault_then_crash,
                   double_then_crash)
