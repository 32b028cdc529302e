"""The recovery table: the design's cases, rows over the drive's state classes, each an
instance of one converge rule; metadata that cannot be understood converges too."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from ovirt_cdrom.domain.model import EMPTY_TRAY, FileTray, Tray, VolumeRef, VolumeTray
from ovirt_cdrom.domain.recovery import RECOVERY_TABLE, Decision, Row, converge, decide
from ovirt_cdrom.domain.state import (
    EMPTY,
    Changing,
    DriveState,
    Ejecting,
    Empty,
    Inserting,
    Loaded,
    Switched,
    Unreadable,
)
from rig import volume

DESIGN_CASES = ("insert.1", "insert.2", "insert.3", "eject.1", "eject.2", "eject.3",
                "change.2", "change.3", "change.4", "change.5", "change.6")
OLD, NEW, OTHER = volume("old"), volume("new"), volume("other")
FOREIGN = FileTray("/rhev/data-center/mnt/isodomain/other.iso")

# One instance of each state a row may name: the ejecting (or settled) CD is OLD, the
# loading (or switched-to) CD is NEW.
INSTANCE: dict[type[DriveState], DriveState] = {
    Inserting: Inserting(NEW),
    Ejecting: Ejecting(OLD),
    Changing: Changing(OLD, NEW),
    Switched: Switched(NEW, OLD),
}
# Every state recovery may meet, for the exhaustive check.
EVERY_STATE: dict[str, DriveState] = {
    "empty": EMPTY,
    "loaded": Loaded(OLD),
    "inserting": Inserting(NEW),
    "ejecting": Ejecting(OLD),
    "ejecting-unnamed": Ejecting(None),
    "changing": Changing(OLD, NEW),
    "switched": Switched(NEW, OLD),
    "unreadable": Unreadable("conflicting CD-ROM entries", (OLD, NEW)),
    "unreadable-naming-nothing": Unreadable("not well-formed"),
}


def tray_of(volume: VolumeRef) -> Tray:
    return VolumeTray(volume.domain_id, volume.image_id, volume.volume_id)


def volume_fields(state: DriveState) -> dict[str, VolumeRef | None]:
    """The state's fields that name a volume, read off the dataclass (None: ``Ejecting``
    a CD no entry names)."""
    return {f.name: value for f in dataclasses.fields(state)
            if (value := getattr(state, f.name)) is None or isinstance(value, VolumeRef)}


@dataclasses.dataclass(frozen=True)
class Observation:
    state: DriveState
    tray: Tray
    active: frozenset[VolumeRef]

    def describe(self) -> tuple[type[DriveState], dict[str, bool], str | None]:
        """The facts a row's cells name: the state's class, which of its fields' volumes
        are active, which field's volume the tray holds (None: none of them)."""
        fields = volume_fields(self.state)
        holder = next((name for name, v in fields.items()
                       if v is not None and v.in_tray(self.tray)), None)
        # No volume is no prepared volume: it counts as torn down.
        active = {n: v is not None and v in self.active for n, v in fields.items()}
        return type(self.state), active, holder

    def __str__(self) -> str:
        names = {OLD: "old", NEW: "new", OTHER: "other"}
        state = next((n for n, s in EVERY_STATE.items() if s == self.state),
                     type(self.state).__name__)
        held = next((n for v, n in names.items() if v.in_tray(self.tray)),
                    "foreign" if self.tray == FOREIGN else "empty")
        active = "+".join(sorted(names[v] for v in self.active)) or "none"
        return f"{state}-holds:{held}-active:{active}"


def matches(row: Row, obs: Observation) -> bool:
    """Whether ``row`` describes ``obs``, read from the row's cells alone."""
    cls, active, holder = obs.describe()
    return (cls is row.state and all(active.get(name) == want
                                     for name, want in row.active.items())
            and holder == row.tray)


def observations(row: Row) -> list[Observation]:
    """Every observation the row describes: a cell the row leaves out taken both ways, a
    tray holding none of the state's volumes taken as empty, a file and another volume."""
    state = INSTANCE[row.state]
    volumes = {name: v for name, v in volume_fields(state).items() if v is not None}
    trays = [tray_of(volumes[row.tray])] if row.tray else [EMPTY_TRAY, FOREIGN, tray_of(OTHER)]
    free = [name for name in volumes if name not in row.active and name != row.tray]
    out = []
    for tray, flags in itertools.product(trays, itertools.product([True, False],
                                                                  repeat=len(free))):
        active = {volumes[n] for n, want in row.active.items() if want}
        active |= {volumes[n] for n, flag in zip(free, flags, strict=True) if flag}
        if row.tray:
            active.add(volumes[row.tray])  # a CD in the tray is active
        out.append(Observation(state, tray, frozenset(active)))
    return out


def every_observation() -> list[Observation]:
    out = []
    for state in EVERY_STATE.values():
        volumes = state.volumes
        trays = [EMPTY_TRAY, FOREIGN, tray_of(OTHER), *map(tray_of, volumes)]
        for tray in trays:
            for n in range(len(volumes) + 1):
                for active in itertools.combinations(volumes, n):
                    out.append(Observation(state, tray, frozenset(active)))
    return out


def decided(obs: Observation) -> Decision:
    return decide(obs.state, obs.tray, obs.active)


def kept(decision: Decision) -> VolumeRef | None:
    assert isinstance(decision.final, Empty | Loaded), decision.final  # no marker left
    return decision.final.volume if isinstance(decision.final, Loaded) else None


def agrees_with_converge(decision: Decision, obs: Observation) -> bool:
    """Same final state, same teardown of active volumes; tearing down an inactive volume
    (a no-op that succeeds) is the only difference a row may have."""
    rule = converge(obs.state, obs.tray, obs.active)
    return (decision.final == rule.final
            and {v for v in decision.teardown if v in obs.active} == set(rule.teardown))


def test_table_has_every_design_case_once() -> None:
    cases = [row.case for row in RECOVERY_TABLE]
    assert len(cases) == len(set(cases))
    assert set(DESIGN_CASES) <= set(cases)
    # In the design's order, so the table reads next to the design.
    assert [c for c in cases if c in DESIGN_CASES] == list(DESIGN_CASES)


@pytest.mark.parametrize("row", RECOVERY_TABLE, ids=[r.case for r in RECOVERY_TABLE])
def test_row_names_only_fields_of_its_state(row: Row) -> None:
    fields = set(volume_fields(INSTANCE[row.state]))
    named = {*row.active, *row.teardown} | {f for f in (row.tray, row.keep) if f}
    assert named <= fields, named - fields
    assert row.keep in (row.tray, None)  # what stays named is what the tray holds
    assert row.tray is None or row.active.get(row.tray, True)  # a tray's CD is active


@pytest.mark.parametrize("row", RECOVERY_TABLE, ids=[r.case for r in RECOVERY_TABLE])
def test_row_is_matched_by_exactly_its_observations(row: Row) -> None:
    for obs in observations(row):
        matching = [r.case for r in RECOVERY_TABLE if matches(r, obs)]
        assert matching == [row.case], str(obs)
        assert decided(obs).case == row.case, str(obs)


@pytest.mark.parametrize("row", RECOVERY_TABLE, ids=[r.case for r in RECOVERY_TABLE])
def test_row_decision_is_the_converge_rule(row: Row) -> None:
    for obs in observations(row):
        decision = decided(obs)
        assert agrees_with_converge(decision, obs), (str(obs), decision)
        assert decision.design == row.design


@pytest.mark.parametrize("row", RECOVERY_TABLE, ids=[r.case for r in RECOVERY_TABLE])
def test_row_keeps_what_the_vm_holds_and_leaves_no_marker(row: Row) -> None:
    for obs in observations(row):
        decision = decided(obs)
        volume = kept(decision)
        assert volume is None or volume.in_tray(obs.tray)
        # Nothing leaks: every active volume but the kept one is torn down.
        assert obs.active - {volume} <= set(decision.teardown)
        assert volume not in decision.teardown


@pytest.mark.parametrize("obs", every_observation(), ids=str)
def test_any_observation_converges_to_what_the_vm_holds(obs: Observation) -> None:
    decision = decided(obs)
    rows = [r for r in RECOVERY_TABLE if matches(r, obs)]
    assert len(rows) <= 1
    if isinstance(obs.state, Unreadable):
        assert decision.case == "unreadable" and not rows
    elif rows:
        assert decision.case == rows[0].case
    else:
        assert decision.case == "converge"
    assert agrees_with_converge(decision, obs)
    volume = kept(decision)
    held_named = [v for v in obs.state.volumes if v.in_tray(obs.tray)]
    assert volume == (held_named[0] if held_named else None)
    assert obs.active - {volume} <= set(decision.teardown)
    assert volume not in decision.teardown


@pytest.mark.parametrize(("tray", "active", "final", "teardown"), [
    (tray_of(OLD), {OLD, NEW}, Loaded(OLD), {NEW}),
    (tray_of(NEW), {NEW}, Loaded(NEW), set()),
    (EMPTY_TRAY, {OLD}, EMPTY, {OLD}),
    (FOREIGN, set(), EMPTY, set()),
], ids=["holds-old", "holds-new", "empty", "foreign"])
def test_unreadable_metadata_takes_the_tray_as_the_truth(
        tray: Tray, active: set[VolumeRef], final: DriveState,
        teardown: set[VolumeRef]) -> None:
    decision = decide(Unreadable("conflicting CD-ROM entries", (OLD, NEW)), tray,
                      frozenset(active))
    assert decision.case == "unreadable"
    assert decision.final == final
    assert set(decision.teardown) == teardown
    assert "tray is the truth" in decision.design
