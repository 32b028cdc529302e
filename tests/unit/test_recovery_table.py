"""The recovery table: the design's cases, each an instance of one converge rule."""

from __future__ import annotations

import itertools

import pytest
from ovirt_cdrom.domain.model import CdromSlot, VolumeRef, block_volume_path
from ovirt_cdrom.domain.recovery import (
    ANY,
    RECOVERY_TABLE,
    Decision,
    Observation,
    Role,
    Row,
    Shape,
    _converge,
    decide,
    shape_of,
)

from .values import A, B

DESIGN_CASES = ("insert.1", "insert.2", "insert.3", "eject.1", "eject.2", "eject.3",
                "change.2", "change.3", "change.4", "change.5", "change.6")
OLD, NEW = A, B  # the ejecting (or settled) CD and the loading (or switched-to) CD
FOREIGN = "/rhev/data-center/mnt/isodomain/other.iso"


def slot_of(shape: Shape) -> CdromSlot:
    return {
        Shape.SETTLED: CdromSlot(current=OLD),
        Shape.LOADING: CdromSlot(loading=NEW),
        Shape.EJECTING: CdromSlot(current=OLD, ejecting=True),
        Shape.CHANGE: CdromSlot(current=OLD, loading=NEW),
        Shape.SWITCHED: CdromSlot(current=NEW, stale=OLD),
    }[shape]


def volume_of(slot: CdromSlot, role: Role) -> VolumeRef | None:
    """The volume behind a role, read off the slot independently of the code under test."""
    if role is Role.LOADING:
        return slot.loading
    if role is Role.EJECTING:
        return slot.stale if slot.stale is not None else (
            slot.current if slot.ejecting or slot.loading is not None else None)
    if role is Role.SETTLED:
        return slot.current if slot.settled or slot.stale is not None else None
    return None


def observations(row: Row) -> list[Observation]:
    """Every observation the row describes (an ANY cell taken both ways)."""
    slot = slot_of(row.shape)
    held_volume = volume_of(slot, row.vm_holds)
    helds = [block_volume_path(held_volume)] if held_volume else [None, FOREIGN]
    out = []
    loading_vals = [True, False] if row.loading_active is ANY else [row.loading_active]
    ejecting_vals = [True, False] if row.ejecting_active is ANY else [row.ejecting_active]
    for held, l_active, e_active in itertools.product(helds, loading_vals, ejecting_vals):
        active = set()
        for role, flag in ((Role.LOADING, l_active), (Role.EJECTING, e_active)):
            vol = volume_of(slot, role)
            if flag and vol is not None:
                active.add(vol)
        settled = volume_of(slot, Role.SETTLED)
        if settled is not None and settled.is_at(held):
            active.add(settled)  # a CD in the tray is active
        out.append(Observation.of(slot, held, active))
    return out


def matches(row: Row, obs: Observation) -> bool:
    """Whether ``row`` describes ``obs``, read from the row's cells alone."""
    slot = obs.slot
    assert isinstance(slot, CdromSlot)
    if [e.state for e in slot_of(row.shape).entries()] != [e.state for e in slot.entries()]:
        return False
    for flag, role in ((row.loading_active, Role.LOADING), (row.ejecting_active, Role.EJECTING)):
        vol = volume_of(slot, role)
        if flag is not ANY and (vol is not None and vol in obs.active) != flag:
            return False
    holder = next((r for r in (Role.LOADING, Role.EJECTING, Role.SETTLED)
                   if (v := volume_of(slot, r)) is not None and v.is_at(obs.held)), Role.NONE)
    return holder is row.vm_holds


def agrees_with_converge(decision: Decision, obs: Observation) -> bool:
    """Same final entry, same teardown of active volumes; tearing down an inactive volume
    (a no-op that succeeds) is the only difference a row may have."""
    rule = _converge(obs, "converge", "")
    return (decision.final == rule.final
            and {v for v in decision.teardown if v in obs.active} == set(rule.teardown))


def test_table_has_every_design_case_once() -> None:
    cases = [row.case for row in RECOVERY_TABLE]
    assert len(cases) == len(set(cases))
    assert set(DESIGN_CASES) <= set(cases)
    # In the design's order, so the table reads next to the design.
    assert [c for c in cases if c in DESIGN_CASES] == list(DESIGN_CASES)


@pytest.mark.parametrize("row", RECOVERY_TABLE, ids=[r.case for r in RECOVERY_TABLE])
def test_row_is_matched_by_exactly_its_observations(row: Row) -> None:
    for obs in observations(row):
        matching = [r.case for r in RECOVERY_TABLE if matches(r, obs)]
        assert matching == [row.case], obs
        assert decide(obs).case == row.case


@pytest.mark.parametrize("row", RECOVERY_TABLE, ids=[r.case for r in RECOVERY_TABLE])
def test_row_decision_is_the_converge_rule(row: Row) -> None:
    for obs in observations(row):
        decision = decide(obs)
        assert agrees_with_converge(decision, obs), (decision, _converge(obs, "converge", ""))


@pytest.mark.parametrize("row", RECOVERY_TABLE, ids=[r.case for r in RECOVERY_TABLE])
def test_row_keeps_what_the_vm_holds_and_leaves_no_marker(row: Row) -> None:
    for obs in observations(row):
        decision = decide(obs)
        assert decision.final.settled
        kept = decision.final.current
        assert kept is None or kept.is_at(obs.held)
        # Nothing leaks: every active volume but the kept one is torn down.
        assert obs.active - {kept} <= set(decision.teardown)
        assert kept not in decision.teardown


def every_observation() -> list[Observation]:
    out = []
    for shape in Shape:
        slot = slot_of(shape)
        vols = slot.volumes
        helds: list[str | None] = [None, FOREIGN, *map(block_volume_path, vols)]
        for held in helds:
            for n in range(len(vols) + 1):
                for active in itertools.combinations(vols, n):
                    out.append(Observation.of(slot, held, active))
    return out


def label(obs: Observation) -> str:
    names = {OLD: "old", NEW: "new"}
    held = next((n for v, n in names.items() if v.is_at(obs.held)),
                "foreign" if obs.held else "empty")
    active = "+".join(sorted(names[v] for v in obs.active)) or "none"
    assert isinstance(obs.slot, CdromSlot)
    return f"{shape_of(obs.slot).name.lower()}-holds:{held}-active:{active}"


@pytest.mark.parametrize("obs", every_observation(), ids=label)
def test_any_observation_converges_to_what_the_vm_holds(obs: Observation) -> None:
    decision = decide(obs)
    assert sum(matches(r, obs) for r in RECOVERY_TABLE) <= 1
    if decision.case != "converge":
        assert matches(next(r for r in RECOVERY_TABLE if r.case == decision.case), obs)
    assert agrees_with_converge(decision, obs)
    kept = decision.final.current
    assert decision.final.settled
    assert kept is None or kept.is_at(obs.held)
    held_named = [v for v in obs.slot.volumes if v.is_at(obs.held)]
    assert kept == (held_named[0] if held_named else None)
    assert obs.active - {kept} <= set(decision.teardown)
