"""Value objects and the CD-ROM slot entity.

Everything here is pure: no I/O, only the standard library. Identifiers are validated on
construction, so a path, a glob or a piece of XML cannot travel inside a UUID field.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ovirt_cdrom.domain.errors import InvalidMetadata, InvalidParameter

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MAX_INDEX = 18277  # 'zzz': far beyond any bus, small enough to keep names short
_MAX_PATH = 4096


def parse_uuid(value: object, field_name: str) -> str:
    """Return ``value`` as a canonical (lower-case) UUID string, or raise InvalidParameter."""
    if not isinstance(value, str):
        raise InvalidParameter(field_name, f"expected a UUID string, got {type(value).__name__}")
    text = value.strip().lower() if len(value) <= 64 else value
    if not _UUID_RE.match(text):
        raise InvalidParameter(field_name, f"not a UUID: {value[:80]!r}")
    return text


@dataclass(frozen=True, slots=True)
class VmId:
    value: str

    @classmethod
    def parse(cls, value: object) -> VmId:
        return cls(parse_uuid(value, "vmID"))

    def __hash__(self) -> int:
        # Equal ids have equal values; a str caches its hash (no tuple per lookup).
        return hash(self.value)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class VolumeRef:
    """An ISO volume by its PDIV coordinates (pool, domain, image, volume UUIDs)."""

    pool_id: str
    domain_id: str
    image_id: str
    volume_id: str

    KEYS = ("poolID", "domainID", "imageID", "volumeID")

    @classmethod
    def parse(cls, spec: object, field_name: str = "drive_spec") -> VolumeRef:
        """Build from vdsm's ``{"poolID", "domainID", "imageID", "volumeID"}`` mapping."""
        if not isinstance(spec, Mapping):
            raise InvalidParameter(field_name, f"expected a mapping, got {type(spec).__name__}")
        values = []
        for key in cls.KEYS:
            if key not in spec:
                raise InvalidParameter(f"{field_name}.{key}", "missing")
            values.append(parse_uuid(spec[key], f"{field_name}.{key}"))
        return cls(*values)

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.KEYS, (self.pool_id, self.domain_id, self.image_id,
                                    self.volume_id), strict=True))

    @property
    def path_suffix(self) -> str:
        return f"/{self.domain_id}/images/{self.image_id}/{self.volume_id}"

    def is_at(self, path: str | None) -> bool:
        """Whether ``path`` is where vdsm exposes this volume.

        vdsm exposes a volume at ``.../<domain>/images/<image>/<volume>`` whatever the
        mount point (``/rhev/data-center/mnt/blockSD`` for block domains), so the
        suffix identifies the volume without asking storage.
        """
        return path is not None and path.endswith(self.path_suffix)

    def __hash__(self) -> int:
        # Equal refs have equal volume ids; hashing one cached str is what lookups cost.
        return hash(self.volume_id)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not VolumeRef:
            return NotImplemented
        assert isinstance(other, VolumeRef)
        return (self.volume_id == other.volume_id and self.image_id == other.image_id
                and self.domain_id == other.domain_id and self.pool_id == other.pool_id)

    def __str__(self) -> str:
        return f"{self.domain_id}/{self.image_id}/{self.volume_id}"


def block_volume_path(volume: VolumeRef) -> str:
    """The path vdsm gives libvirt for a volume on a block storage domain."""
    return f"/rhev/data-center/mnt/blockSD{volume.path_suffix}"


_IFACE_PREFIX = {"sata": "sd", "scsi": "sd", "ide": "hd", "virtio": "vd"}
_DRIVE_RE = re.compile(r"^(sd|hd|vd)[a-z]{1,3}$")


@dataclass(frozen=True, slots=True, order=True)
class DriveName:
    """A drive's target name, as libvirt and the metadata know it (``sdc``)."""

    value: str

    @classmethod
    def parse(cls, value: object) -> DriveName:
        if not isinstance(value, str) or not _DRIVE_RE.fullmatch(value):
            raise InvalidParameter("drive", f"not a drive name: {str(value)[:80]!r}")
        return cls(value)

    @classmethod
    def from_iface_index(cls, iface: object, index: object) -> DriveName:
        """Derive the name exactly as vdsm does: a prefix per bus, then base-26 letters.

        ``sata``/2 gives ``sdc``; index 26 gives ``sdaa``. The index may be an int or a
        string of digits (the engine sends strings).
        """
        if not isinstance(iface, str) or iface not in _IFACE_PREFIX:
            raise InvalidParameter(
                "iface", f"unsupported interface {str(iface)[:40]!r}; "
                f"expected one of {', '.join(sorted(_IFACE_PREFIX))}")
        return cls(_IFACE_PREFIX[iface] + _letters(parse_index(index)))

    def __hash__(self) -> int:
        return hash(self.value)

    def __str__(self) -> str:
        return self.value


def parse_index(index: object) -> int:
    if isinstance(index, bool):
        raise InvalidParameter("index", "expected an integer, got bool")
    if isinstance(index, int):
        value = index
    elif isinstance(index, str) and index.isascii() and index.isdigit() and len(index) < 7:
        value = int(index)
    else:
        raise InvalidParameter("index", f"expected a non-negative integer, got {str(index)[:40]!r}")
    if not 0 <= value <= _MAX_INDEX:
        # A huge int cannot even be formatted (ValueError past 4300 digits).
        shown = value if -_MAX_INDEX <= value <= 10 * _MAX_INDEX else "too large"
        raise InvalidParameter("index", f"out of range: {shown}")
    return value


def _letters(index: int) -> str:
    """Bijective base-26: 0 -> a, 25 -> z, 26 -> aa, 701 -> zz, 702 -> aaa."""
    out = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(ord("a") + rem) + out
    return out


class DiskType(enum.Enum):
    BLOCK = "block"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Media:
    """Something the hypervisor can put in a tray: a path and how to open it."""

    path: str
    disk_type: DiskType


# --- What the engine asks for --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadVolume:
    volume: VolumeRef


@dataclass(frozen=True, slots=True)
class LoadPath:
    """The legacy route: an ISO given by path (old ISO domains)."""

    path: str

    @classmethod
    def parse(cls, value: object) -> LoadPath:
        if not isinstance(value, str):
            raise InvalidParameter("path", f"expected a string, got {type(value).__name__}")
        if not value.startswith("/") or len(value) > _MAX_PATH or "\x00" in value:
            raise InvalidParameter("path", f"not an absolute path: {value[:80]!r}")
        if any(part == ".." for part in value.split("/")):
            raise InvalidParameter("path", f"path traversal is not allowed: {value[:80]!r}")
        return cls(value)


@dataclass(frozen=True, slots=True)
class Eject:
    pass


CdTarget = LoadVolume | LoadPath | Eject


# --- Metadata: the design's entries and the slot they describe --------------------------


class EntryState(enum.Enum):
    """The design's ``state`` attribute on a CD-ROM metadata entry."""

    LOADING = "loading"
    EJECTING = "ejecting"


@dataclass(frozen=True, slots=True)
class CdEntry:
    """One logical ``<ovirt-vm:device name="sdc">`` entry: an optional state and PDIV."""

    state: EntryState | None = None
    volume: VolumeRef | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state.value if self.state else None,
                "pdiv": self.volume.as_dict() if self.volume else None}


EMPTY_ENTRY = CdEntry()


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A drive's CD-ROM metadata that cannot be understood: why, and what it names.

    Entries no flow writes and no vdsm 4.50 state explains (ids that are not UUIDs, a
    partial PDIV, conflicting entries). ``volumes`` are the volumes it still names
    clearly: every complete PDIV of UUIDs found in the drive's elements. Recovery then
    takes the tray as the truth (see ``recovery.decide``).
    """

    reason: str
    volumes: tuple[VolumeRef, ...] = ()

    def __str__(self) -> str:
        return f"unreadable ({self.reason})"


# What a metadata read gives for one drive: its entries, or why they cannot be read.
DriveEntries = tuple[CdEntry, ...] | Unreadable


@dataclass(frozen=True, slots=True)
class CdromSlot:
    """What the metadata says about one CD-ROM drive.

    ``current`` is the CD the tray is recorded to hold. A change in flight is ``loading``
    (a volume going into an empty tray, or replacing ``current``) or ``ejecting``
    (``current`` is leaving; with no ``current``, a CD no entry names is leaving, as vdsm
    4.50 marks the eject of a CD loaded by path). ``stale`` is an old CD already switched
    out whose volume still awaits teardown. The shapes map one to one onto the design's
    metadata entries (see :meth:`entries`).
    """

    current: VolumeRef | None = None
    loading: VolumeRef | None = None
    ejecting: bool = False
    stale: VolumeRef | None = None

    def __post_init__(self) -> None:
        pending = (self.loading is not None) + self.ejecting + (self.stale is not None)
        if pending > 1:
            raise InvalidMetadata("more than one pending change on one CD-ROM")
        if self.stale is not None and self.current is None:
            raise InvalidMetadata("a switched-out CD needs a current CD")
        if self.current is not None and self.current in (self.loading, self.stale):
            raise InvalidMetadata(f"volume {self.current} is both current and pending")

    # --- reading ---------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        return self.loading is None and not self.ejecting and self.stale is None

    @property
    def volumes(self) -> tuple[VolumeRef, ...]:
        """Every volume the metadata names, current first."""
        return tuple(v for v in (self.current, self.loading, self.stale) if v is not None)

    def entries(self) -> tuple[CdEntry, ...]:
        """The design's logical metadata entries for this slot, in order."""
        if self.loading is not None:
            if self.current is None:
                return (CdEntry(EntryState.LOADING, self.loading),)
            return (CdEntry(EntryState.EJECTING, self.current),
                    CdEntry(EntryState.LOADING, self.loading))
        if self.ejecting:
            return (CdEntry(EntryState.EJECTING, self.current),)
        if self.stale is not None:
            return (CdEntry(None, self.current), CdEntry(EntryState.EJECTING, self.stale))
        return (CdEntry(None, self.current),)

    @classmethod
    def from_entries(cls, entries: Iterable[CdEntry]) -> CdromSlot:
        """Read the design's entries back; anything the flows never write is invalid."""
        entries = tuple(entries)
        states = tuple(e.state for e in entries)
        for e in entries:
            if e.state is EntryState.LOADING and e.volume is None:
                raise InvalidMetadata("a loading entry without a volume")
        if len(entries) == 0:
            return cls()
        if len(entries) == 1:
            (e,) = entries
            if e.state is None:
                return cls(current=e.volume)
            if e.state is EntryState.LOADING:
                return cls(loading=e.volume)
            # `ejecting` alone; without a volume: a CD no entry names is leaving.
            return cls(current=e.volume, ejecting=True)
        if len(entries) == 2:
            a, b = entries
            if set(states) == {EntryState.EJECTING, EntryState.LOADING}:
                old, new = (a, b) if a.state is EntryState.EJECTING else (b, a)
                if old.volume is None or old.volume == new.volume:
                    # vdsm 4.50 loading the CD the entry already names (or loading over
                    # a CD no entry names): whichever the tray holds stays. As an eject of
                    # the named CD, recovery keeps it if the tray holds it and tears it
                    # down otherwise; the new one needs no marker of its own.
                    if old.volume is None:
                        return cls(loading=new.volume)
                    return cls(current=old.volume, ejecting=True)
                return cls(current=old.volume, loading=new.volume)
            if set(states) == {None, EntryState.LOADING}:
                now, new = (a, b) if a.state is None else (b, a)
                if now.volume is None:
                    # The design's insert, literally: the empty entry stays and a
                    # `loading` entry is added beside it.
                    return cls(loading=new.volume)
            if set(states) == {None, EntryState.EJECTING}:
                now, old = (a, b) if a.state is None else (b, a)
                if now.volume is None or old.volume is None:
                    # An eject whose empty entry was written beside the marker (or a
                    # marker naming nothing beside the entry of the CD in the tray).
                    return cls(current=now.volume or old.volume, ejecting=True)
                if now.volume == old.volume:
                    return cls(current=now.volume)
                return cls(current=now.volume, stale=old.volume)
        raise InvalidMetadata(
            "conflicting CD-ROM entries: "
            + ", ".join(f"{s.value if s else 'none'}" for s in states))

    @classmethod
    def read(cls, entries: DriveEntries) -> CdromSlot | Unreadable:
        """The slot the entries describe, or :class:`Unreadable` when they describe none."""
        if isinstance(entries, Unreadable):
            return entries
        try:
            return cls.from_entries(entries)
        except InvalidMetadata as err:
            named = tuple(dict.fromkeys(e.volume for e in entries if e.volume is not None))
            return Unreadable(err.reason or str(err), named)

    # --- moving ----------------------------------------------------------------------

    def begin_load(self, volume: VolumeRef) -> CdromSlot:
        """Mark ``volume`` loading (and the current CD, if any, ejecting)."""
        self._require_settled("load")
        return CdromSlot(current=self.current, loading=volume)

    def begin_eject(self) -> CdromSlot:
        self._require_settled("eject")
        if self.current is None:
            raise InvalidMetadata("nothing to eject")
        return CdromSlot(current=self.current, ejecting=True)

    def apply(self, old_torn_down: bool = True) -> CdromSlot:
        """The tray switched: the pending change becomes what the tray holds.

        If the old CD's volume could not be torn down, the markers stay as they are: the
        entries still name the old volume, so recovery finds it and retries (the design's
        change case 4 / eject case 2) instead of forgetting an active volume.
        """
        if self.settled or (not old_torn_down and self.current is not None):
            return self
        if self.loading is not None:
            return CdromSlot(current=self.loading)
        if self.stale is not None:
            # Already switched: only the old CD's marker goes; the tray keeps `current`.
            return CdromSlot(current=self.current)
        return CdromSlot()

    def discard(self) -> CdromSlot:
        """The change did not happen: back to the CD the tray held before."""
        if self.loading is not None or self.ejecting:
            return CdromSlot(current=self.current)
        return self

    def _require_settled(self, what: str) -> None:
        if not self.settled:
            raise InvalidMetadata(f"cannot {what}: a change is already pending ({self})")

    def __str__(self) -> str:
        return ", ".join(
            f"{e.state.value if e.state else 'none'}:{e.volume or 'empty'}"
            for e in self.entries())


@dataclass(frozen=True, slots=True)
class DriveKey:
    vm: VmId
    drive: DriveName

    def __hash__(self) -> int:
        return hash((self.vm.value, self.drive.value))

    def __eq__(self, other: object) -> bool:
        # Compares what the generated method does, without a tuple of objects per lookup.
        if other.__class__ is not DriveKey:
            return NotImplemented
        assert isinstance(other, DriveKey)
        return self.vm.value == other.vm.value and self.drive.value == other.drive.value

    def __str__(self) -> str:
        return f"{self.vm}/{self.drive}"


@dataclass(slots=True)
class VolumeUsers:
    """Host-wide users of each volume: the reference counting vdsm's bug 1725915 asked for.

    A user is a drive that holds the volume or is loading it. A volume is torn down only
    when its last user lets go. Not thread-safe by itself: the service guards it.
    """

    _users: dict[VolumeRef, set[DriveKey]] = field(default_factory=dict)
    # The same relation by user, so that forgetting a drive does not scan every volume.
    _by_user: dict[DriveKey, set[VolumeRef]] = field(default_factory=dict)

    def claim(self, volume: VolumeRef, user: DriveKey) -> None:
        self._users.setdefault(volume, set()).add(user)
        self._by_user.setdefault(user, set()).add(volume)

    def release(self, volume: VolumeRef, user: DriveKey) -> bool:
        """Drop ``user``; return True when nobody else uses the volume."""
        held = self._by_user.get(user)
        if held is not None:
            held.discard(volume)
            if not held:
                del self._by_user[user]
        users = self._users.get(volume)
        if users is None:
            return True
        users.discard(user)
        if not users:
            del self._users[volume]
            return True
        return False

    def others(self, volume: VolumeRef, user: DriveKey) -> frozenset[DriveKey]:
        return frozenset(self._users.get(volume, set()) - {user})

    def users(self, volume: VolumeRef) -> frozenset[DriveKey]:
        return frozenset(self._users.get(volume, ()))

    def holders(self) -> list[DriveKey]:
        """Every drive recorded as using some volume."""
        return list(self._by_user)

    def forget_drive(self, user: DriveKey) -> None:
        for volume in list(self._by_user.get(user, ())):
            self.release(volume, user)

    def clear(self) -> None:
        self._users.clear()
        self._by_user.clear()

    def snapshot(self) -> dict[VolumeRef, frozenset[DriveKey]]:
        return {v: frozenset(u) for v, u in self._users.items()}
