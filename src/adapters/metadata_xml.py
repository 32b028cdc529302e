"""The ``<ovirt-vm:vm>`` metadata block: a hardened parser and our CD-ROM entries in it.

Shared by every MetadataRepository (in-memory, libvirt, vdsm), so that they cannot drift.
Only the ``<ovirt-vm:device devtype="disk" name="...">`` elements of the CD-ROM drive being
written are ever replaced; every other node of the block is left exactly where and as it was.

A drive's state (:mod:`ovirt_cdrom.domain.state`) is read from and written to its elements.
Two encodings of a pending change exist; both are always read:

* ``vdsm-4.50`` (the default): one entry per drive, the pending change nested in it as
  ``<ovirt-vm:change>`` with ``<ovirt-vm:state>`` and the new PDIV, as vdsm 4.50 shipped it
  (its own metadata reader cannot handle two entries with one name);
* ``design``: the design's entries, one ``<ovirt-vm:device>`` per entry, the pending ones
  carrying a ``state`` attribute (two entries named ``sdc`` during a change).

The design's logical entries (``(state, volume)`` pairs, :func:`entries` and
:func:`from_entries`) are also the simulator's public format for a drive's metadata.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterable, Sequence
from typing import Any

from lxml import etree
from ovirt_cdrom.adapters.safe_xml import hardened_parser
from ovirt_cdrom.domain.errors import CdromError, InvalidMetadata
from ovirt_cdrom.domain.model import DriveName, VolumeRef, parse_uuid
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

NS = "http://ovirt.org/vm/1.0"
PREFIX = "ovirt-vm"
ROOT_TAG = "vm"
_Q = f"{{{NS}}}"
_DEVICE = _Q + "device"
_CHANGE = _Q + "change"
_STATE = _Q + "state"
# vdsm's Metadata.dump writes a device's children sorted by name.
_PDIV_TAGS = (("domainID", "domain_id"), ("imageID", "image_id"),
              ("poolID", "pool_id"), ("volumeID", "volume_id"))
_PDIV_BY_QNAME = {_Q + tag: tag for tag, _attr in _PDIV_TAGS}
MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64


class Encoding(enum.Enum):
    DESIGN = "design"
    VDSM_450 = "vdsm-4.50"

    @classmethod
    def parse(cls, value: str | Encoding) -> Encoding:
        if isinstance(value, Encoding):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"unknown metadata encoding {value!r}; expected one of "
                f"{', '.join(e.value for e in cls)}") from None


def new_block() -> etree._Element:
    """An empty ``<ovirt-vm:vm>`` block."""
    return etree.Element(_Q + ROOT_TAG, nsmap={PREFIX: NS})


def parse_block(text: str | bytes | None) -> etree._Element:
    """Parse an untrusted ``<ovirt-vm:vm>`` block (see :func:`parse_untrusted`)."""
    if text is None or (isinstance(text, str | bytes) and not text.strip()):
        return new_block()
    root = parse_untrusted(text)
    if root.tag != _Q + ROOT_TAG:
        raise InvalidMetadata(f"expected <{PREFIX}:{ROOT_TAG}>, got <{root.tag}>")
    return root


def parse_untrusted(text: str | bytes) -> etree._Element:
    """Parse untrusted metadata: no DTD, no entities, no network, bounded size and depth."""
    data = text.encode() if isinstance(text, str) else text
    if len(data) > MAX_BYTES:
        raise InvalidMetadata(f"metadata block of {len(data)} bytes is too large")
    try:
        root = etree.fromstring(data, hardened_parser())
    except etree.XMLSyntaxError as err:
        raise InvalidMetadata(f"not well-formed XML: {err}") from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise InvalidMetadata("a DOCTYPE is not allowed in VM metadata")
    if next(root.iter(etree.Entity), None) is not None:
        raise InvalidMetadata("entity references are not allowed in VM metadata")
    # A document cannot nest deeper than it has tags: only a long one needs counting.
    if data.count(b"<") > MAX_DEPTH and _depth(root) > MAX_DEPTH:
        raise InvalidMetadata(f"metadata nested deeper than {MAX_DEPTH} levels")
    return root


def _depth(root: etree._Element) -> int:
    depth = deepest = 0
    for event, _node in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        deepest = max(deepest, depth)
    return deepest


def serialize(root: etree._Element, pretty: bool = False) -> str:
    return etree.tostring(root, encoding="unicode", pretty_print=pretty)


def canonical(root: etree._Element, skip: Iterable[str] = ()) -> str:
    """Canonical XML of the block without the CD-ROM entries of the drives named in
    ``skip``; whitespace between elements is ignored (it means nothing in vdsm's
    metadata). Two blocks with equal canonical forms mean the same to vdsm."""
    block = copy.deepcopy(root)
    names = set(skip)
    # Blank text first: a block left without children once the entries are skipped (as
    # libvirt indents a block holding only our entry) must not keep its indentation.
    for el in block.iter():
        if el.tail is not None and not el.tail.strip():
            el.tail = None
        if len(el) and el.text is not None and not el.text.strip():
            el.text = None
    for el in list(block.iterchildren(_DEVICE)):
        if el.get("name") in names and el.get("devtype", "disk") == "disk":
            block.remove(el)
    return etree.tostring(block, method="c14n").decode()


def _drive_devices(root: etree._Element, drive: DriveName) -> list[etree._Element]:
    return [el for el in root.iterchildren(_DEVICE)
            if el.get("name") == drive.value and el.get("devtype", "disk") == "disk"]


def _read_pdiv(el: etree._Element, where: str) -> VolumeRef | None:
    values: dict[str, str] = {}
    for child in el:  # one pass; the first child of each name counts, as find() gives
        tag = _PDIV_BY_QNAME.get(child.tag)
        if tag is not None and tag not in values:
            values[tag] = (child.text or "").strip()
    if not values:
        return None
    if len(values) != len(_PDIV_TAGS):
        missing = sorted({t for t, _ in _PDIV_TAGS} - set(values))
        raise InvalidMetadata(f"{where}: incomplete PDIV, missing {', '.join(missing)}")
    try:
        return VolumeRef(*(parse_uuid(values[k], k) for k in VolumeRef.KEYS))
    except CdromError as err:
        raise InvalidMetadata(f"{where}: {err}") from None


LOADING, EJECTING = "loading", "ejecting"
Entry = tuple[str | None, VolumeRef | None]  # the design's entry: its state, its PDIV


def entries(state: DriveState) -> tuple[Entry, ...]:
    """The design's logical entries for ``state``, in order."""
    match state:
        case Empty():
            return ((None, None),)
        case Loaded(volume):
            return ((None, volume),)
        case Inserting(new):
            return ((LOADING, new),)
        case Ejecting(old):
            return ((EJECTING, old),)
        case Changing(old, new):
            return ((EJECTING, old), (LOADING, new))
        case Switched(current, old):
            return ((None, current), (EJECTING, old))
    raise InvalidMetadata(f"{state} cannot be written")


def from_entries(found: Sequence[Entry]) -> DriveState:
    """The state the design's entries describe, in either order; raise InvalidMetadata for
    entries no flow writes and no state of vdsm 4.50 explains (D17, D22)."""
    if any(state == LOADING and volume is None for state, volume in found):
        raise InvalidMetadata("a loading entry without a volume")
    by_state = dict(found)
    states = sorted(found, key=lambda e: e[0] or "")
    if len(found) == 0:
        return EMPTY
    if len(found) == 1:
        state, volume = found[0]
        if state is None:
            return EMPTY if volume is None else Loaded(volume)
        if state == LOADING:
            assert volume is not None
            return Inserting(volume)
        return Ejecting(volume)
    if len(found) == 2 and len(by_state) == 2:
        old, new, now = by_state.get(EJECTING), by_state.get(LOADING), by_state.get(None)
        if EJECTING in by_state and LOADING in by_state:
            assert new is not None
            if old is None:
                return Inserting(new)  # loading over a CD no entry names
            # vdsm 4.50 loading the CD the entry already names: whichever the tray holds
            # stays; as an eject of it, recovery keeps it or tears it down (D22).
            return Ejecting(old) if old == new else Changing(old, new)
        if None in by_state and LOADING in by_state and now is None:
            assert new is not None
            return Inserting(new)  # the design's insert, literally (D17)
        if None in by_state and EJECTING in by_state:
            if now is None or old is None:
                return Ejecting(now or old)  # the empty entry written beside the marker
            return Loaded(now) if now == old else Switched(now, old)
    raise InvalidMetadata("conflicting CD-ROM entries: "
                          + ", ".join(state or "none" for state, _volume in states))


def _read_state(text: str | None, where: str) -> str | None:
    if text is None:
        return None
    state = text.strip()
    if state not in (LOADING, EJECTING):
        raise InvalidMetadata(f"{where}: unknown state {text[:40]!r}")
    return state


def read(root: etree._Element, drive: DriveName) -> DriveState:
    """The drive's state, from either encoding, or :class:`Unreadable` naming the volumes
    its elements still name clearly. Other drives read on regardless."""
    devices = _drive_devices(root, drive)
    try:
        return from_entries(_read_entries(devices, drive))
    except InvalidMetadata as err:
        return Unreadable(err.reason, _salvage(devices))


def _salvage(devices: Iterable[etree._Element]) -> tuple[VolumeRef, ...]:
    """Every complete PDIV of UUIDs in the drive's elements and their changes, once each."""
    found: dict[VolumeRef, None] = {}
    for el in devices:
        for node in (el, *el.iterchildren(_CHANGE)):
            try:
                volume = _read_pdiv(node, "device")
            except InvalidMetadata:
                continue
            if volume is not None:
                found[volume] = None
    return tuple(found)


def _read_entries(devices: list[etree._Element], drive: DriveName) -> list[Entry]:
    found: list[Entry] = []
    for el in devices:
        where = f"device {drive}"
        state = _read_state(el.get("state"), where)
        volume = _read_pdiv(el, where)
        changes = el.findall(_CHANGE)
        if not changes:
            found.append((state, volume))
            continue
        if len(changes) > 1 or state is not None or len(devices) > 1:
            raise InvalidMetadata(f"{where}: conflicting pending changes")
        found.extend(_expand_change(volume, changes[0], where))
    return found


def _expand_change(volume: VolumeRef | None, change: etree._Element,
                   where: str) -> list[Entry]:
    """vdsm 4.50's nested form as the design's logical entries."""
    state_el = change.find(_STATE)
    state = _read_state(state_el.text if state_el is not None else None, where + " change")
    new = _read_pdiv(change, where + " change")
    if state == LOADING:
        if new is None:
            raise InvalidMetadata(f"{where}: a loading change without a volume")
        return [(LOADING, new)] if volume is None else [(EJECTING, volume), (LOADING, new)]
    if state == EJECTING:
        if new is None:
            # Without a PDIV of its own: vdsm 4.50 ejecting a CD no entry names (one
            # loaded by path), as its test fixture EJECTING_CD_NO_PDIV_METADATA_XML has it.
            return [(EJECTING, volume)]
        if volume is None:
            raise InvalidMetadata(f"{where}: a switched-out CD without the CD in the tray")
        # Our extension (D19): the tray switched to `volume`, `new` is the old CD.
        return [(None, volume), (EJECTING, new)]
    raise InvalidMetadata(f"{where}: a change without a state")


def write(root: etree._Element, drive: DriveName, state: DriveState,
          encoding: Encoding = Encoding.VDSM_450) -> None:
    """Replace the drive's elements by ``state``'s, in place; every other node stays where
    it was.

    An element naming the same volume as one it replaces keeps that element's other
    children and attributes (e.g. the ``volumeChain`` vdsm wrote at VM start), so that a
    change that is rolled back leaves the entry as it was (D20).
    """
    old = _drive_devices(root, drive)
    donors = _extras_by_volume(old)
    if encoding is Encoding.DESIGN:
        new_elements = [_design_element(drive, entry, donors) for entry in entries(state)]
    else:
        new_elements = [_vdsm450_element(drive, state, donors)]
    if old:
        anchor = old[0]
        tail = anchor.tail
        for el in new_elements:
            el.tail = tail
            anchor.addprevious(el)
        for el in old:
            root.remove(el)
    else:
        _append(root, new_elements)


def has_elements(root: etree._Element, drive: DriveName) -> bool:
    """Whether the block holds any element for the drive (even the empty one)."""
    return bool(_drive_devices(root, drive))


def remove(root: etree._Element, drive: DriveName) -> None:
    """Remove the drive's elements (as if it had never had metadata)."""
    for el in _drive_devices(root, drive):
        root.remove(el)


_OWN_CHILDREN = frozenset({_CHANGE, _STATE, *(_Q + tag for tag, _ in _PDIV_TAGS)})
_OWN_ATTRIBUTES = frozenset({"devtype", "name", "state"})
_Extras = tuple[dict[str, str], list[etree._Element]]


def _extras_by_volume(elements: Iterable[etree._Element]) -> dict[VolumeRef, _Extras]:
    """What each existing entry holds besides what we write, keyed by its own volume."""
    donors: dict[VolumeRef, _Extras] = {}
    for el in elements:
        try:
            volume = _read_pdiv(el, "device")
        except InvalidMetadata:
            continue
        if volume is None or volume in donors:
            continue
        attributes = {str(k): str(v) for k, v in el.attrib.items() if k not in _OWN_ATTRIBUTES}
        children = [child for child in el if child.tag not in _OWN_CHILDREN]
        if attributes or children:
            donors[volume] = (attributes, children)
    return donors


def _give_extras(el: etree._Element, volume: VolumeRef | None,
                 donors: dict[VolumeRef, _Extras]) -> None:
    if volume is None or volume not in donors:
        return
    attributes, children = donors[volume]
    for key, value in attributes.items():
        el.set(key, value)
    for child in children:
        el.append(copy.deepcopy(child))


def _append(root: etree._Element, elements: Iterable[etree._Element]) -> None:
    children = list(root)
    indent = children[-1].tail if children else None
    for el in elements:
        if children:
            el.tail = children[-1].tail
            children[-1].tail = indent
        root.append(el)
        children.append(el)


def _device(drive: DriveName) -> etree._Element:
    return etree.Element(_DEVICE, {"devtype": "disk", "name": drive.value})


def _add_pdiv(parent: etree._Element, volume: VolumeRef, state: str | None = None) -> None:
    fields = [(tag, getattr(volume, attr)) for tag, attr in _PDIV_TAGS]
    if state is not None:
        fields.append(("state", state))
        fields.sort()
    for tag, value in fields:
        etree.SubElement(parent, _Q + tag).text = value


def _design_element(drive: DriveName, entry: Entry,
                    donors: dict[VolumeRef, _Extras]) -> etree._Element:
    state, volume = entry
    el = _device(drive)
    if state is not None:
        el.set("state", state)
    if volume is not None:
        _add_pdiv(el, volume)
        _give_extras(el, volume, donors)
    return el


def _vdsm450_element(drive: DriveName, state: DriveState,
                     donors: dict[VolumeRef, _Extras]) -> etree._Element:
    el = _device(drive)
    match state:
        case Empty():
            pass
        case Loaded(current) | Changing(current, _) | Switched(current, _) | \
                Ejecting(current) if current is not None:
            _add_pdiv(el, current)
            _give_extras(el, current, donors)
    match state:
        case Inserting(new) | Changing(_, new):
            _add_pdiv(etree.SubElement(el, _CHANGE), new, state=LOADING)
        case Switched(_, old):
            _add_pdiv(etree.SubElement(el, _CHANGE), old, state=EJECTING)
        case Ejecting():
            etree.SubElement(etree.SubElement(el, _CHANGE), _STATE).text = EJECTING
        case Unreadable():
            raise InvalidMetadata(f"{state} cannot be written")
    return el
