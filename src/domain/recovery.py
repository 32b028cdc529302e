"""Recovery: a pure decision from what was observed to what must be done.

Recovery cleans up the storage leftovers of an interrupted insert, eject or change without
changing what the VM holds: the CD in the tray is the truth, the metadata is made to name
it, and every volume the metadata named that the tray does not hold is torn down.

``RECOVERY_TABLE`` is the design's "VM recovery flow" section, one row per case, in the
design's order and words. ``decide`` looks the observation up in it; an observation the
design does not list (two faults in a row, a VM changed behind our back) falls back to the
rule every row is an instance of (``_converge``), and says so.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from ovirt_cdrom.domain.model import CdromSlot, Unreadable, VolumeRef


class Shape(enum.Enum):
    """The CD-ROM metadata entries, as the design's recovery section describes them."""

    SETTLED = "one entry, no state"
    LOADING = 'state="loading", no other metadata for the CD-ROM'
    EJECTING = 'state="ejecting", no other metadata for the CD-ROM'
    CHANGE = 'two entries, one state="ejecting", second state="loading"'
    SWITCHED = 'two entries, one state="ejecting", second without state'


class Role(enum.Enum):
    """Which entry's volume a fact is about."""

    LOADING = "loading"    # the entry with state="loading"
    EJECTING = "ejecting"  # the entry with state="ejecting"
    SETTLED = "settled"    # the entry without state
    NONE = "none"          # nothing (an empty tray, or a CD no entry names)


ANY = None  # in a table cell: this fact does not matter for the row


@dataclass(frozen=True, slots=True)
class Row:
    case: str
    shape: Shape
    loading_active: bool | None  # "volume for loading is prepared / torn down"
    ejecting_active: bool | None  # "volume for ejected CD is prepared / torn down"
    vm_holds: Role               # "CD is loaded / CD isn't loaded / CDROM contains ..."
    teardown: tuple[Role, ...]
    keep: Role                   # the entry that remains, without state
    design: str                  # the design's words for the actions


L, E, S, N = Role.LOADING, Role.EJECTING, Role.SETTLED, Role.NONE

# fmt: off
RECOVERY_TABLE: tuple[Row, ...] = (
    # --- VM with empty tray, insert CD ---------------------------------------------------
    Row("insert.1", Shape.LOADING,  True,  ANY,   L, (),  L,
        'remove state="loading" from metadata'),
    Row("insert.2", Shape.LOADING,  True,  ANY,   N, (L,), N,
        "tear down the volume and remove drive spec"),
    Row("insert.3", Shape.LOADING,  False, ANY,   N, (),  N,
        "remove drive spec metadata"),
    # --- VM with loaded CD, eject CD (also change case 1) -------------------------------
    Row("eject.1",  Shape.EJECTING, ANY,   True,  E, (),  E,
        'remove state="ejecting" from metadata'),
    Row("eject.2",  Shape.EJECTING, ANY,   True,  N, (E,), N,
        'tear down the volume and remove state="ejecting" (DECISION: and the entry)'),
    Row("eject.3",  Shape.EJECTING, ANY,   False, N, (),  N,
        'remove state="ejecting" (DECISION: and the entry)'),
    # --- VM with loaded CD, changeCD ----------------------------------------------------
    Row("change.2", Shape.CHANGE,   False, ANY,   E, (),  E,
        'remove metadata for loading; remove state="ejecting"'),
    Row("change.3", Shape.CHANGE,   True,  ANY,   E, (L,), E,
        'tear down loading CD volume; remove metadata for loading CD; '
        'remove state="ejecting"'),
    Row("change.4", Shape.CHANGE,   True,  ANY,   L, (E,), L,
        'tear down ejecting CD volume; remove metadata for ejecting CD; '
        'remove state="loading"'),
    Row("change.5", Shape.SWITCHED, ANY,   True,  S, (E,), S,
        "tear down ejecting CD volume; remove metadata for ejecting CD"),
    Row("change.6", Shape.SWITCHED, ANY,   False, S, (),  S,
        "remove metadata for ejecting CD"),
    # --- Beyond the design: nothing pending -------------------------------------------
    Row("settled",  Shape.SETTLED,  ANY,   ANY,   S, (),  S,
        "nothing to do"),
)
# fmt: on


@dataclass(frozen=True, slots=True)
class Observation:
    """What recovery saw for one drive."""

    slot: CdromSlot | Unreadable
    held: str | None                 # the path in the tray, None when empty
    active: frozenset[VolumeRef]     # which of the slot's volumes are active

    @classmethod
    def of(cls, slot: CdromSlot | Unreadable, held: str | None,
           active: Iterable[VolumeRef]) -> Observation:
        return cls(slot, held, frozenset(active))


@dataclass(frozen=True, slots=True)
class Decision:
    case: str                        # the table row, or "converge" when none matched
    teardown: tuple[VolumeRef, ...]
    final: CdromSlot
    design: str


def shape_of(slot: CdromSlot) -> Shape:
    if slot.loading is not None:
        return Shape.LOADING if slot.current is None else Shape.CHANGE
    if slot.ejecting:
        return Shape.EJECTING
    if slot.stale is not None:
        return Shape.SWITCHED
    return Shape.SETTLED


def roles(slot: CdromSlot) -> dict[Role, VolumeRef | None]:
    """The volume behind each role, for the shape the slot has."""
    shape = shape_of(slot)
    if shape is Shape.LOADING:
        return {L: slot.loading}
    if shape is Shape.EJECTING:
        return {E: slot.current}
    if shape is Shape.CHANGE:
        return {L: slot.loading, E: slot.current}
    if shape is Shape.SWITCHED:
        return {S: slot.current, E: slot.stale}
    return {S: slot.current}


def held_role(slot: CdromSlot, held: str | None) -> Role:
    for role, volume in roles(slot).items():
        if volume is not None and volume.is_at(held):
            return role
    return N


def decide(obs: Observation) -> Decision:
    """Decide what recovery does for one drive."""
    if isinstance(obs.slot, Unreadable):
        return _converge(obs, "unreadable",
                         "beyond the design: metadata not understood, the tray is the truth: "
                         "name what it holds, tear down the rest")
    shape = shape_of(obs.slot)
    by_role = roles(obs.slot)
    holds = held_role(obs.slot, obs.held)

    def active(role: Role) -> bool:
        volume = by_role.get(role)
        return volume is not None and volume in obs.active

    for row in RECOVERY_TABLE:
        if (row.shape is shape and row.vm_holds is holds
                and (row.loading_active is ANY or row.loading_active == active(L))
                and (row.ejecting_active is ANY or row.ejecting_active == active(E))):
            teardown = tuple(v for r in row.teardown if (v := by_role.get(r)) is not None)
            return Decision(row.case, teardown, CdromSlot(current=by_role.get(row.keep)),
                            row.design)
    return _converge(obs, "converge", "beyond the design: name what the VM holds, "
                     "tear down the rest")


def _converge(obs: Observation, case: str, design: str) -> Decision:
    """The rule behind every row: keep what the tray holds, tear down every other volume.

    Used for what the design does not list, e.g. a settled entry naming a CD the tray no
    longer holds, or a change whose loading volume is gone while the tray is empty.
    """
    kept = next((v for v in obs.slot.volumes if v.is_at(obs.held)), None)
    teardown = tuple(v for v in obs.slot.volumes if v != kept and v in obs.active)
    return Decision(case, teardown, CdromSlot(current=kept), design)
