"""The ``<ovirt-vm:vm>`` codec: every drive state in both encodings, the design's logical
entries, vdsm 4.50's nested forms, untouched neighbours, hostile and corrupt input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.metadata_xml import (
    EJECTING,
    LOADING,
    Encoding,
    Entry,
    entries,
    from_entries,
    parse_block,
    read,
    write,
)
from ovirt_cdrom.domain.errors import InvalidMetadata
from ovirt_cdrom.domain.model import DriveName, VolumeRef
from ovirt_cdrom.domain.state import (
    EMPTY,
    Changing,
    DriveState,
    Ejecting,
    Inserting,
    Loaded,
    Switched,
    Unreadable,
)
from rig import volume

A, B, C = volume("a"), volume("b"), volume("c")
NS = metadata_xml.NS
SDC = DriveName("sdc")
SDA = DriveName("sda")

STATES: dict[str, DriveState] = {
    "empty": EMPTY,
    "loaded": Loaded(A),
    "inserting": Inserting(B),
    "ejecting": Ejecting(A),
    "ejecting-unnamed": Ejecting(None),  # vdsm 4.50 ejecting a CD loaded by path
    "changing": Changing(A, B),
    "switched": Switched(B, A),
}

# The design's entries for each state, in order: (state, PDIV).
ENTRIES: dict[str, tuple[Entry, ...]] = {
    "empty": ((None, None),),
    "loaded": ((None, A),),
    "inserting": ((LOADING, B),),
    "ejecting": ((EJECTING, A),),
    "ejecting-unnamed": ((EJECTING, None),),
    "changing": ((EJECTING, A), (LOADING, B)),
    "switched": ((None, B), (EJECTING, A)),
}

# What vdsm keeps in the block: a system disk with its volume chain, a NIC, typed values,
# custom properties, a comment, and a foreign namespace. None of it is ours.
VDSM_BLOCK = f"""<ovirt-vm:vm xmlns:ovirt-vm="{NS}" xmlns:ext="urn:example:ext">
    <ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
    <ovirt-vm:destroy_on_reboot type="bool">False</ovirt-vm:destroy_on_reboot>
    <!-- written by vdsm; keep me -->
    <ovirt-vm:memGuaranteedSize type="int">1024</ovirt-vm:memGuaranteedSize>
    <ovirt-vm:custom>
        <ovirt-vm:viodiskcache>writeback</ovirt-vm:viodiskcache>
    </ovirt-vm:custom>
    <ovirt-vm:device devtype="disk" name="sda">
        <ovirt-vm:domainID>{C.domain_id}</ovirt-vm:domainID>
        <ovirt-vm:imageID>{C.image_id}</ovirt-vm:imageID>
        <ovirt-vm:poolID>{C.pool_id}</ovirt-vm:poolID>
        <ovirt-vm:volumeID>{C.volume_id}</ovirt-vm:volumeID>
        <ovirt-vm:volumeChain>
            <ovirt-vm:volumeChainNode>
                <ovirt-vm:domainID>{C.domain_id}</ovirt-vm:domainID>
                <ovirt-vm:imageID>{C.image_id}</ovirt-vm:imageID>
                <ovirt-vm:leaseOffset type="int">0</ovirt-vm:leaseOffset>
                <ovirt-vm:path>/rhev/data-center/mnt/blockSD/x/images/y/z</ovirt-vm:path>
                <ovirt-vm:volumeID>{C.volume_id}</ovirt-vm:volumeID>
            </ovirt-vm:volumeChainNode>
        </ovirt-vm:volumeChain>
    </ovirt-vm:device>
    <ovirt-vm:device mac_address="56:6f:4b:2c:00:01">
        <ovirt-vm:network>ovirtmgmt</ovirt-vm:network>
    </ovirt-vm:device>
    <ext:tuning level="3"><ext:knob>on</ext:knob></ext:tuning>
    <ovirt-vm:device devtype="disk" name="sdc"/>
    <ovirt-vm:device devtype="disk" name="sdd">
        <ovirt-vm:domainID>{C.domain_id}</ovirt-vm:domainID>
        <ovirt-vm:imageID>{C.image_id}</ovirt-vm:imageID>
        <ovirt-vm:poolID>{C.pool_id}</ovirt-vm:poolID>
        <ovirt-vm:volumeID>{C.volume_id}</ovirt-vm:volumeID>
    </ovirt-vm:device>
    <ovirt-vm:startTime type="float">1700000000.5</ovirt-vm:startTime>
</ovirt-vm:vm>"""


def ours(el: etree._Element, drive: DriveName = SDC) -> bool:
    return (el.tag == f"{{{NS}}}device" and el.get("name") == drive.value
            and el.get("devtype", "disk") == "disk")


def others(root: etree._Element, drive: DriveName = SDC) -> list[bytes]:
    """Every node but the drive's own entries, canonicalised, in document order."""
    out = [etree.tostring(root.getroottree(), method="c14n").split(b">", 1)[0]]  # root tag
    for el in root:
        if isinstance(el, etree._Comment):
            # (c14n of a lone comment node crashes lxml; compare its text instead)
            out.append(b"<!--" + (el.text or "").encode() + b"-->")
        elif not ours(el, drive):
            out.append(etree.tostring(el, method="c14n", with_comments=True))
    return out


def reparsed(root: etree._Element) -> etree._Element:
    return parse_block(metadata_xml.serialize(root))


# --- The design's logical entries --------------------------------------------------------


@pytest.mark.parametrize("name", STATES)
def test_entries_are_the_designs(name: str) -> None:
    assert entries(STATES[name]) == ENTRIES[name]


@pytest.mark.parametrize("name", STATES)
def test_entries_round_trip_in_either_order(name: str) -> None:
    state = STATES[name]
    assert from_entries(entries(state)) == state
    assert from_entries(tuple(reversed(entries(state)))) == state


def test_no_entries_is_an_empty_tray() -> None:
    assert from_entries(()) == EMPTY


def test_an_unreadable_state_has_no_entries() -> None:
    with pytest.raises(InvalidMetadata):
        entries(Unreadable("x", (A,)))


@pytest.mark.parametrize(("found", "state"), [
    # An eject whose empty entry was written beside the marker.
    (((None, None), (EJECTING, A)), Ejecting(A)),
    # The same volume settled and ejecting: the tray still holds it.
    (((None, A), (EJECTING, A)), Loaded(A)),
    # vdsm 4.50 ejecting a CD no entry names (one loaded by path).
    (((EJECTING, None),), Ejecting(None)),
    # vdsm 4.50 loading the CD the entry already names: whichever the tray holds stays.
    (((EJECTING, A), (LOADING, A)), Ejecting(A)),
    # vdsm 4.50 loading over a CD no entry names.
    (((EJECTING, None), (LOADING, B)), Inserting(B)),
], ids=["empty-beside-ejecting", "same-volume-settled-and-ejecting", "ejecting-no-volume",
        "reloading-the-same-volume", "loading-over-an-unnamed-cd"])
def test_tolerated_entry_combinations(found: tuple[Entry, ...], state: DriveState) -> None:
    assert from_entries(found) == state
    assert from_entries(tuple(reversed(found))) == state


@pytest.mark.parametrize("found", [
    ((LOADING, A), (LOADING, B)),
    ((EJECTING, A), (EJECTING, B)),
    ((None, A), (None, B)),
    ((None, A), (LOADING, B)),
    ((LOADING, None),),
    ((EJECTING, A), (LOADING, B), (None, C)),
    ((None, A), (None, A), (None, A)),
], ids=lambda e: "+".join(state or "none" for state, _ in e))
def test_entries_no_flow_writes_are_refused(found: tuple[Entry, ...]) -> None:
    with pytest.raises(InvalidMetadata):
        from_entries(found)


_volumes = st.sampled_from([A, B, C])
_entries = st.tuples(st.sampled_from([None, LOADING, EJECTING]), st.one_of(st.none(), _volumes))


@given(st.lists(_entries, max_size=3))
def test_any_readable_entries_round_trip(found: list[Entry]) -> None:
    try:
        state = from_entries(found)
    except InvalidMetadata:
        return
    assert from_entries(entries(state)) == state
    # What was read names every volume the entries named.
    assert {v for _, v in found if v} == set(state.volumes)


@st.composite
def states(draw: st.DrawFn) -> DriveState:
    """Any state a flow or vdsm writes, over distinct volumes."""
    old, new = draw(st.permutations([A, B, C]))[:2]
    kind = draw(st.sampled_from(list(STATES)))
    choices: dict[str, DriveState] = {
        "empty": EMPTY, "loaded": Loaded(old), "inserting": Inserting(new),
        "ejecting": Ejecting(old), "ejecting-unnamed": Ejecting(None),
        "changing": Changing(old, new), "switched": Switched(new, old)}
    return choices[kind]


@given(states(), st.sampled_from(list(Encoding)))
def test_generated_states_round_trip(state: DriveState, encoding: Encoding) -> None:
    assert from_entries(entries(state)) == state
    assert from_entries(tuple(reversed(entries(state)))) == state
    root = parse_block(VDSM_BLOCK)
    write(root, SDC, state, encoding)
    assert read(reparsed(root), SDC) == state


# --- Both encodings ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
@pytest.mark.parametrize("name", STATES)
def test_every_state_round_trips(name: str, encoding: Encoding) -> None:
    state = STATES[name]
    root = parse_block(VDSM_BLOCK)
    write(root, SDC, state, encoding)
    again = reparsed(root)
    assert read(again, SDC) == state
    elements = [el for el in again if ours(el)]
    if encoding is Encoding.DESIGN:
        # One element per entry, the pending ones with their state attribute.
        assert [el.get("state") for el in elements] == [s for s, _ in ENTRIES[name]]
        assert not any(el.find(f"{{{NS}}}change") is not None for el in elements)
    else:
        assert len(elements) == 1
        assert elements[0].get("state") is None


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
def test_an_unreadable_state_is_never_written(encoding: Encoding) -> None:
    root = parse_block(VDSM_BLOCK)
    with pytest.raises(InvalidMetadata):
        write(root, SDC, Unreadable("x", (A,)), encoding)
    assert read(root, SDC) == EMPTY


@pytest.mark.parametrize("first", list(Encoding), ids=lambda e: e.value)
@pytest.mark.parametrize("second", list(Encoding), ids=lambda e: e.value)
@pytest.mark.parametrize("name", STATES)
def test_either_encoding_reads_and_overwrites_the_other(name: str, first: Encoding,
                                                        second: Encoding) -> None:
    root = parse_block(VDSM_BLOCK)
    write(root, SDC, Changing(A, B), first)
    write(root, SDC, STATES[name], second)
    assert read(root, SDC) == STATES[name]


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
@pytest.mark.parametrize("name", STATES)
def test_write_leaves_everything_else_unchanged(name: str, encoding: Encoding) -> None:
    root = parse_block(VDSM_BLOCK)
    before = others(root)
    sda_before = read(root, SDA)
    for step in ("changing", name, "loaded", name):
        write(root, SDC, STATES[step], encoding)
        assert others(root) == before
    assert read(root, SDA) == sda_before == Loaded(C)
    # The drive's entries sit where the old one was: between <ext:tuning> and sdd.
    tags = [el.tag if not ours(el) else "sdc" for el in root]
    idx = tags.index("sdc")
    assert tags[idx - 1] == "{urn:example:ext}tuning"


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
def test_first_write_appends_to_a_block_without_the_drive(encoding: Encoding) -> None:
    root = parse_block(VDSM_BLOCK.replace('<ovirt-vm:device devtype="disk" name="sdc"/>', ""))
    before = others(root)
    write(root, SDC, Inserting(B), encoding)
    assert others(root) == before
    assert ours(list(root)[-1])
    assert read(root, SDC) == Inserting(B)


def test_regular_disk_sda_with_volume_chain_is_never_touched() -> None:
    root = parse_block(VDSM_BLOCK)
    sda = next(el for el in root if ours(el, SDA))
    sda_xml = etree.tostring(sda, method="c14n")
    for encoding in Encoding:
        for state in STATES.values():
            write(root, SDC, state, encoding)
    now = next(el for el in root if ours(el, SDA))
    assert now is sda
    assert etree.tostring(now, method="c14n") == sda_xml


def test_no_element_is_an_empty_tray_and_empty_element_too() -> None:
    root = parse_block(f'<ovirt-vm:vm xmlns:ovirt-vm="{NS}"/>')
    assert read(root, SDC) == EMPTY
    assert not metadata_xml.has_elements(root, SDC)
    assert read(parse_block(VDSM_BLOCK), SDC) == EMPTY
    assert metadata_xml.has_elements(parse_block(VDSM_BLOCK), SDC)


@pytest.mark.parametrize("text", [None, "", "   \n"], ids=repr)
def test_no_metadata_is_an_empty_block(text: str | None) -> None:
    root = parse_block(text)
    assert root.tag == f"{{{NS}}}vm" and len(root) == 0


def test_canonical_ignores_our_entries_and_whitespace_only() -> None:
    root = parse_block(VDSM_BLOCK)
    before = metadata_xml.canonical(root, skip=["sdc"])
    write(root, SDC, Changing(A, B), Encoding.DESIGN)
    assert metadata_xml.canonical(reparsed(root), skip=["sdc"]) == before
    assert metadata_xml.canonical(root, skip=[]) != metadata_xml.canonical(
        parse_block(VDSM_BLOCK), skip=[])
    squeezed = parse_block(VDSM_BLOCK.replace("\n    ", ""))
    assert metadata_xml.canonical(squeezed, skip=["sdc"]) == before


# --- vdsm 4.50's nested forms ---------------------------------------------------------


def _children(fields: dict[str, str]) -> str:
    """Elements as vdsm's Metadata.dump writes a device's children: sorted by name."""
    return "".join(f"<ovirt-vm:{k}>{v}</ovirt-vm:{k}>" for k, v in sorted(fields.items()))


def _pdiv(volume: VolumeRef) -> str:
    return _children(volume.as_dict())


def _block(body: str) -> str:
    return f'<ovirt-vm:vm xmlns:ovirt-vm="{NS}">{body}</ovirt-vm:vm>'


def _nested(current: VolumeRef | None, state: str | None, change: VolumeRef | None) -> str:
    """One sdc entry as vdsm 4.50 writes it: the CD's PDIV, a nested change."""
    pdiv = _pdiv(current) if current is not None else ""
    inner = _children({**(change.as_dict() if change is not None else {}),
                       **({} if state is None else {"state": state})})
    return _block(f'<ovirt-vm:device devtype="disk" name="sdc">{pdiv}'
                  f"<ovirt-vm:change>{inner}</ovirt-vm:change></ovirt-vm:device>")


@pytest.mark.parametrize(("current", "state", "change", "expected"), [
    (A, LOADING, B, Changing(A, B)),
    (None, LOADING, B, Inserting(B)),
    (A, EJECTING, None, Ejecting(A)),
    # vdsm's own fixture EJECTING_CD_NO_PDIV_METADATA_XML: ejecting a CD loaded by path.
    (None, EJECTING, None, Ejecting(None)),
    # Our extension (D19): switched to A, B still to tear down.
    (A, EJECTING, B, Switched(A, B)),
    (A, LOADING, A, Ejecting(A)),  # vdsm loading the CD its entry already names
], ids=["change", "insert", "eject", "eject-unnamed", "switched", "reload-same"])
def test_vdsm_450_nested_forms_are_read_as_states(current: VolumeRef | None, state: str,
                                                  change: VolumeRef | None,
                                                  expected: DriveState) -> None:
    assert read(parse_block(_nested(current, state, change)), SDC) == expected


VDSM_EJECTING_NO_PDIV = _nested(None, EJECTING, None)


def test_vdsm_eject_marker_without_pdiv_is_written_as_vdsm_writes_it() -> None:
    root = parse_block(f'<ovirt-vm:vm xmlns:ovirt-vm="{NS}"/>')
    write(root, SDC, Ejecting(None), Encoding.VDSM_450)
    assert etree.tostring(root, method="c14n") == \
        etree.tostring(parse_block(VDSM_EJECTING_NO_PDIV), method="c14n")


@pytest.mark.parametrize(("state", "current", "nested", "change"), [
    (Changing(A, B), A, LOADING, B),
    (Inserting(B), None, LOADING, B),
    (Switched(A, B), A, EJECTING, B),
    (Ejecting(A), A, EJECTING, None),
], ids=["change", "insert", "switched", "eject"])
def test_vdsm_450_writes_the_nested_form(state: DriveState, current: VolumeRef | None,
                                         nested: str, change: VolumeRef | None) -> None:
    root = parse_block(_block(""))
    write(root, SDC, state, Encoding.VDSM_450)
    assert etree.tostring(root, method="c14n") == \
        etree.tostring(parse_block(_nested(current, nested, change)), method="c14n")


# --- Unreadable: what the elements still name clearly -------------------------------------


def test_unreadable_entries_name_every_clear_pdiv_they_hold() -> None:
    fake = _pdiv(B).replace(B.pool_id, "pool-id")
    root = parse_block(_block(f'<ovirt-vm:device devtype="disk" name="sdc">{_pdiv(A)}'
                              "<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>"
                              f"{fake}</ovirt-vm:change></ovirt-vm:device>"))
    state = read(root, SDC)
    assert isinstance(state, Unreadable)
    assert state.volumes == (A,)
    assert "poolID" in state.reason


def test_unreadable_salvage_takes_each_volume_once_from_elements_and_changes() -> None:
    root = parse_block(_block(
        f'<ovirt-vm:device devtype="disk" name="sdc" state="busy">{_pdiv(A)}</ovirt-vm:device>'
        f'<ovirt-vm:device devtype="disk" name="sdc">{_pdiv(A)}'
        f"<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>{_pdiv(B)}"
        "</ovirt-vm:change></ovirt-vm:device>"
        '<ovirt-vm:device devtype="disk" name="sdc">'
        f"<ovirt-vm:volumeID>{C.volume_id}</ovirt-vm:volumeID></ovirt-vm:device>"))
    state = read(root, SDC)
    assert isinstance(state, Unreadable)
    assert state.volumes == (A, B)  # C's PDIV is incomplete: not named clearly


@given(st.sampled_from(list(STATES)), st.sampled_from(list(Encoding)),
       st.lists(st.sampled_from(list(STATES)), max_size=4))
def test_any_write_sequence_reads_back_the_last(last: str, encoding: Encoding,
                                                 earlier: list[str]) -> None:
    root = parse_block(VDSM_BLOCK)
    before = others(root)
    for name in [*earlier, last]:
        write(root, SDC, STATES[name], encoding)
    again = reparsed(root)
    assert read(again, SDC) == STATES[last]
    assert others(again) == before


# --- Hostile and corrupt input ------------------------------------------------------------

BILLION_LAUGHS = f"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ovirt-vm:vm xmlns:ovirt-vm="{NS}"><ovirt-vm:custom>&lol9;</ovirt-vm:custom></ovirt-vm:vm>"""

EXTERNAL_ENTITY = f"""<?xml version="1.0"?>
<!DOCTYPE vm [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ovirt-vm:vm xmlns:ovirt-vm="{NS}"><ovirt-vm:custom>&xxe;</ovirt-vm:custom></ovirt-vm:vm>"""

DOCTYPE_ONLY = f"""<?xml version="1.0"?>
<!DOCTYPE vm SYSTEM "http://example.invalid/vm.dtd">
<ovirt-vm:vm xmlns:ovirt-vm="{NS}"/>"""

HOSTILE = {
    "billion-laughs": BILLION_LAUGHS,
    "external-entity": EXTERNAL_ENTITY,
    "doctype": DOCTYPE_ONLY,
    "deep-nesting": _block("<a>" * 100 + "</a>" * 100),
    "huge": _block("<ovirt-vm:custom>" + "x" * (4 * 1024 * 1024 + 1) + "</ovirt-vm:custom>"),
    "garbage": "\x00\x01 not xml at all <<<",
    "truncated": _block("<ovirt-vm:device")[:-20],
    "wrong-root": f'<domain xmlns:ovirt-vm="{NS}"><ovirt-vm:vm/></domain>',
    "wrong-namespace": '<ovirt-vm:vm xmlns:ovirt-vm="http://example.invalid/vm"/>',
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_block_is_refused(text: str) -> None:
    with pytest.raises(InvalidMetadata):
        parse_block(text)


def test_external_entity_is_never_resolved() -> None:
    with pytest.raises(InvalidMetadata) as exc:
        parse_block(EXTERNAL_ENTITY)
    assert "root:" not in str(exc.value)


def test_nesting_within_the_limit_is_read() -> None:
    root = parse_block(_block("<a>" * 50 + "</a>" * 50))
    assert read(root, SDC) == EMPTY


CORRUPT = {
    "two-loading": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc" state="loading">{_pdiv(A)}'
        "</ovirt-vm:device>"
        f'<ovirt-vm:device devtype="disk" name="sdc" state="loading">{_pdiv(B)}'
        "</ovirt-vm:device>"),
    "change-plus-state": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc" state="ejecting">{_pdiv(A)}'
        f"<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>{_pdiv(B)}"
        "</ovirt-vm:change></ovirt-vm:device>"),
    "two-changes": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc">{_pdiv(A)}'
        f"<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>{_pdiv(B)}"
        "</ovirt-vm:change>"
        "<ovirt-vm:change><ovirt-vm:state>ejecting</ovirt-vm:state></ovirt-vm:change>"
        "</ovirt-vm:device>"),
    "change-beside-an-entry": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc">{_pdiv(A)}'
        f"<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>{_pdiv(B)}"
        "</ovirt-vm:change></ovirt-vm:device>"
        f'<ovirt-vm:device devtype="disk" name="sdc" state="ejecting">{_pdiv(A)}'
        "</ovirt-vm:device>"),
    "unknown-state": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc" state="busy">{_pdiv(A)}'
        "</ovirt-vm:device>"),
    "change-without-state": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc">{_pdiv(A)}'
        f"<ovirt-vm:change>{_pdiv(B)}</ovirt-vm:change></ovirt-vm:device>"),
    "loading-change-without-volume": _nested(None, LOADING, None),
    "switched-out-without-current": _nested(None, EJECTING, B),
    "incomplete-pdiv": _block(
        '<ovirt-vm:device devtype="disk" name="sdc">'
        f"<ovirt-vm:volumeID>{A.volume_id}</ovirt-vm:volumeID></ovirt-vm:device>"),
    "path-in-uuid": _block(
        '<ovirt-vm:device devtype="disk" name="sdc">'
        + _pdiv(A).replace(A.image_id, "../../../dev/sda") + "</ovirt-vm:device>"),
    "loading-without-volume": _block(
        '<ovirt-vm:device devtype="disk" name="sdc" state="loading"/>'),
}


@pytest.mark.parametrize("text", CORRUPT.values(), ids=CORRUPT.keys())
def test_conflicting_or_corrupt_entries_are_unreadable(text: str) -> None:
    root = parse_block(text)
    assert isinstance(read(root, SDC), Unreadable)


@pytest.mark.parametrize("text", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_entries_of_sdc_do_not_stop_reading_sda(text: str) -> None:
    root = parse_block(text)
    assert read(root, SDA) == EMPTY
