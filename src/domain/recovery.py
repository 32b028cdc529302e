"""Recovery: a pure decision from what was observed to what must be done.

Recovery cleans up the storage leftovers of an interrupted insert, eject or change without
changing what the VM holds: the CD in the tray is the truth, the metadata is made to name
it, and every volume the metadata named that the tray does not hold is torn down.

``RECOVERY_TABLE`` is the design's "VM recovery flow" section, one row per case, in the
design's order and words (docs/design.md). A row matches a state's class and fields
directly: which of its volumes are active, which one the tray holds. An observation the
design does not list (two faults in a row, a VM changed behind our back) falls back to the
rule every row is an instance of (:func:`converge`), and says so; so does metadata that
cannot be understood (``Unreadable``, D22), where the tray is the truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ovirt_cdrom.domain.model import Tray, VolumeRef
from ovirt_cdrom.domain.state import (
    Changing,
    DriveState,
    Ejecting,
    Inserting,
    Settled,
    Switched,
    Unreadable,
    in_tray,
    settled,
)

ANY = None  # in a cell: this fact does not matter for the row


@dataclass(frozen=True, slots=True)
class Row:
    case: str
    state: type[DriveState]
    active: Mapping[str, bool]     # field -> "volume ... is prepared" (True) / "torn down"
    tray: str | None               # the field whose volume the tray holds; None: none of them
    teardown: tuple[str, ...]      # the fields whose volumes are torn down
    keep: str | None               # the field whose volume stays named; None: the empty entry
    design: str                    # the design's words for the actions


# fmt: off
RECOVERY_TABLE: tuple[Row, ...] = (
    # --- VM with empty tray, insert CD ----------------------------------------------------
    Row("insert.1", Inserting, {"new": True},  "new", (),         "new",
        'remove state="loading" from metadata'),
    Row("insert.2", Inserting, {"new": True},  None,  ("new",),   None,
        "tear down the volume and remove drive spec"),
    Row("insert.3", Inserting, {"new": False}, None,  (),         None,
        "remove drive spec metadata"),
    # --- VM with loaded CD, eject CD (also change case 1) ---------------------------------
    Row("eject.1",  Ejecting,  {"old": True},  "old", (),         "old",
        'remove state="ejecting" from metadata'),
    Row("eject.2",  Ejecting,  {"old": True},  None,  ("old",),   None,
        'tear down the volume and remove state="ejecting" (DECISION: and the entry)'),
    Row("eject.3",  Ejecting,  {"old": False}, None,  (),         None,
        'remove state="ejecting" (DECISION: and the entry)'),
    # --- VM with loaded CD, changeCD ------------------------------------------------------
    Row("change.2", Changing,  {"new": False}, "old", (),         "old",
        'remove metadata for loading; remove state="ejecting"'),
    Row("change.3", Changing,  {"new": True},  "old", ("new",),   "old",
        "tear down loading CD volume; remove metadata for loading CD; "
        'remove state="ejecting"'),
    Row("change.4", Changing,  {"new": True},  "new", ("old",),   "new",
        "tear down ejecting CD volume; remove metadata for ejecting CD; "
        'remove state="loading"'),
    Row("change.5", Switched,  {"old": True},  "current", ("old",), "current",
        "tear down ejecting CD volume; remove metadata for ejecting CD"),
    Row("change.6", Switched,  {"old": False}, "current", (),       "current",
        "remove metadata for ejecting CD"),
)
# fmt: on

CONVERGE = "beyond the design: name what the VM holds, tear down the rest"
UNREADABLE = ("beyond the design: metadata not understood, the tray is the truth: "
              "name what it holds, tear down the rest")


@dataclass(frozen=True, slots=True)
class Decision:
    case: str                        # the table row, "converge" or "unreadable"
    teardown: tuple[VolumeRef, ...]
    final: Settled
    design: str


def _volume(state: DriveState, name: str | None) -> VolumeRef | None:
    value = getattr(state, name) if name is not None else None
    return value if isinstance(value, VolumeRef) else None


def matches(row: Row, state: DriveState, tray: Tray, active: frozenset[VolumeRef]) -> bool:
    """Whether ``row`` describes the observation."""
    if type(state) is not row.state:
        return False
    for name, want in row.active.items():
        if (_volume(state, name) in active) != want:
            return False
    if row.tray is None:
        return in_tray(state, tray) is None
    volume = _volume(state, row.tray)
    return volume is not None and volume.in_tray(tray)


def decide(state: DriveState, tray: Tray, active: frozenset[VolumeRef]) -> Decision:
    """Decide what recovery does for one drive: its state, its tray, which of the state's
    volumes are active."""
    if isinstance(state, Unreadable):
        return converge(state, tray, active, "unreadable", UNREADABLE)
    for row in RECOVERY_TABLE:
        if matches(row, state, tray, active):
            teardown = tuple(v for name in row.teardown
                             if (v := _volume(state, name)) is not None)
            return Decision(row.case, teardown, settled(_volume(state, row.keep)), row.design)
    return converge(state, tray, active)


def converge(state: DriveState, tray: Tray, active: frozenset[VolumeRef],
             case: str = "converge", design: str = CONVERGE) -> Decision:
    """The rule behind every row: keep what the tray holds, tear down every other active
    volume the state names. Used for what the design does not list, e.g. a settled entry
    naming a CD the tray no longer holds, or a change whose loading volume is gone while
    the tray is empty."""
    kept = in_tray(state, tray)
    teardown = tuple(v for v in state.volumes if v != kept and v in active)
    return Decision(case, teardown, settled(kept), design)
