"""What a drive's CD-ROM metadata says: one value, one class per state of the design.

A state holds exactly its volumes. The flows move a drive through them (``Loaded(old)`` to
``Changing(old, new)`` to ``Loaded(new)``), the codec reads and writes them, and recovery's
table matches on their classes and fields (``domain/recovery.py``).

==================  ============================================================
``Empty``           no CD: the empty ``<device name="sdc"/>`` (or no element)
``Loaded``          the CD in the tray, no change pending
``Inserting``       ``state="loading"``: a CD going into an empty tray
``Ejecting``        ``state="ejecting"``: the CD leaving (``old`` None: vdsm 4.50
                    ejecting a CD no entry names, one loaded by path)
``Changing``        ``ejecting`` old + ``loading`` new
``Switched``        the tray switched to ``current``; ``old`` still to tear down
                    (the design's recovery rows change.5/6)
``Unreadable``      metadata that makes no sense (D22): what it names clearly
==================  ============================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from ovirt_cdrom.domain.model import Tray, VolumeRef


@dataclass(frozen=True, slots=True)
class Empty:
    @property
    def volumes(self) -> tuple[VolumeRef, ...]:
        return ()

    def __str__(self) -> str:
        return "empty"


@dataclass(frozen=True, slots=True)
class Loaded:
    volume: VolumeRef

    @property
    def volumes(self) -> tuple[VolumeRef, ...]:
        return (self.volume,)

    def __str__(self) -> str:
        return f"loaded {self.volume}"


@dataclass(frozen=True, slots=True)
class Inserting:
    new: VolumeRef

    @property
    def volumes(self) -> tuple[VolumeRef, ...]:
        return (self.new,)

    def __str__(self) -> str:
        return f"inserting {self.new}"


@dataclass(frozen=True, slots=True)
class Ejecting:
    old: VolumeRef | None

    @property
    def volumes(self) -> tuple[VolumeRef, ...]:
        return () if self.old is None else (self.old,)

    def __str__(self) -> str:
        return f"ejecting {self.old or 'a CD no entry names'}"


@dataclass(frozen=True, slots=True)
class Changing:
    old: VolumeRef
    new: VolumeRef

    def __post_init__(self) -> None:
        if self.old == self.new:
            raise ValueError(f"a change from {self.old} to itself")

    @property
    def volumes(self) -> tuple[VolumeRef, ...]:
        return (self.old, self.new)

    def __str__(self) -> str:
        return f"changing {self.old} to {self.new}"


@dataclass(frozen=True, slots=True)
class Switched:
    current: VolumeRef
    old: VolumeRef

    def __post_init__(self) -> None:
        if self.old == self.current:
            raise ValueError(f"{self.current} switched out for itself")

    @property
    def volumes(self) -> tuple[VolumeRef, ...]:
        return (self.current, self.old)

    def __str__(self) -> str:
        return f"switched to {self.current}, {self.old} to tear down"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A drive's metadata that cannot be understood: why, and the volumes it names clearly
    (every complete PDIV of UUIDs in its elements). Recovery takes the tray as the truth."""

    reason: str
    volumes: tuple[VolumeRef, ...] = ()

    def __str__(self) -> str:
        return f"unreadable ({self.reason})"


DriveState = Empty | Loaded | Inserting | Ejecting | Changing | Switched | Unreadable
Settled = Empty | Loaded
EMPTY = Empty()


def settled(volume: VolumeRef | None) -> Settled:
    """The state naming ``volume`` with no change pending (``Empty`` for None)."""
    return EMPTY if volume is None else Loaded(volume)


def consistent(state: DriveState, tray: Tray) -> bool:
    """Whether the state is settled and names exactly what the tray holds.

    ``Empty`` is consistent with a tray holding a file or a network CD: those are loaded by
    path and no metadata names them (the design's "old behaviour").
    """
    if isinstance(state, Loaded):
        return state.volume.in_tray(tray)
    return isinstance(state, Empty)


def in_tray(state: DriveState, tray: Tray) -> VolumeRef | None:
    """The volume of ``state`` the tray holds, if any."""
    return next((v for v in state.volumes if v.in_tray(tray)), None)
