"""The ``<ovirt-vm:vm>`` codec: both encodings, untouched neighbours, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.metadata_xml import Encoding, parse_block, read_entries, write_entries
from ovirt_cdrom.domain.errors import InvalidMetadata
from ovirt_cdrom.domain.model import CdEntry, CdromSlot, DriveName, EntryState, Unreadable

from .values import A, B, C

NS = metadata_xml.NS
SDC = DriveName("sdc")
SDA = DriveName("sda")

SHAPES = {
    "empty": CdromSlot(),
    "settled": CdromSlot(current=A),
    "inserting": CdromSlot(loading=B),
    "ejecting": CdromSlot(current=A, ejecting=True),
    "changing": CdromSlot(current=A, loading=B),
    "switched": CdromSlot(current=B, stale=A),
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


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
@pytest.mark.parametrize("name", SHAPES)
def test_every_shape_round_trips(name: str, encoding: Encoding) -> None:
    slot = SHAPES[name]
    root = parse_block(VDSM_BLOCK)
    write_entries(root, SDC, slot.entries(), encoding)
    again = parse_block(metadata_xml.serialize(root))
    assert CdromSlot.read(read_entries(again, SDC)) == slot
    if encoding is Encoding.DESIGN:
        assert read_entries(again, SDC) == slot.entries()
    else:
        assert len([el for el in again if ours(el)]) == 1


@pytest.mark.parametrize("first", list(Encoding), ids=lambda e: e.value)
@pytest.mark.parametrize("second", list(Encoding), ids=lambda e: e.value)
@pytest.mark.parametrize("name", SHAPES)
def test_either_encoding_reads_and_overwrites_the_other(name: str, first: Encoding,
                                                        second: Encoding) -> None:
    root = parse_block(VDSM_BLOCK)
    write_entries(root, SDC, SHAPES["changing"].entries(), first)
    write_entries(root, SDC, SHAPES[name].entries(), second)
    assert CdromSlot.read(read_entries(root, SDC)) == SHAPES[name]


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
@pytest.mark.parametrize("name", SHAPES)
def test_write_leaves_everything_else_unchanged(name: str, encoding: Encoding) -> None:
    root = parse_block(VDSM_BLOCK)
    before = others(root)
    sda_before = read_entries(root, SDA)
    for step in ("changing", name, "settled", name):
        write_entries(root, SDC, SHAPES[step].entries(), encoding)
        assert others(root) == before
    assert read_entries(root, SDA) == sda_before == (CdEntry(None, C),)
    # The drive's entries sit where the old one was: between <ext:tuning> and sdd.
    tags = [el.tag if not ours(el) else "sdc" for el in root]
    idx = tags.index("sdc")
    assert tags[idx - 1] == "{urn:example:ext}tuning"


def test_first_write_appends_to_a_block_without_the_drive() -> None:
    root = parse_block(VDSM_BLOCK.replace('<ovirt-vm:device devtype="disk" name="sdc"/>', ""))
    before = others(root)
    write_entries(root, SDC, SHAPES["inserting"].entries())
    assert others(root) == before
    assert ours(list(root)[-1])
    assert read_entries(root, SDC) == SHAPES["inserting"].entries()


def test_regular_disk_sda_with_volume_chain_is_never_touched() -> None:
    root = parse_block(VDSM_BLOCK)
    sda = next(el for el in root if ours(el, SDA))
    sda_xml = etree.tostring(sda, method="c14n")
    for encoding in Encoding:
        for slot in SHAPES.values():
            write_entries(root, SDC, slot.entries(), encoding)
    now = next(el for el in root if ours(el, SDA))
    assert now is sda
    assert etree.tostring(now, method="c14n") == sda_xml


def test_no_element_is_an_empty_tray_and_empty_element_too() -> None:
    root = parse_block(f'<ovirt-vm:vm xmlns:ovirt-vm="{NS}"/>')
    assert CdromSlot.read(read_entries(root, SDC)) == CdromSlot()
    assert CdromSlot.read(read_entries(parse_block(VDSM_BLOCK), SDC)) == CdromSlot()


@pytest.mark.parametrize("text", [None, "", "   \n"], ids=repr)
def test_no_metadata_is_an_empty_block(text: str | None) -> None:
    root = parse_block(text)
    assert root.tag == f"{{{NS}}}vm" and len(root) == 0


def test_vdsm_450_nested_change_is_read_as_the_designs_entries() -> None:
    xml = f"""<ovirt-vm:vm xmlns:ovirt-vm="{NS}">
      <ovirt-vm:device devtype="disk" name="sdc">
        <ovirt-vm:domainID>{A.domain_id}</ovirt-vm:domainID>
        <ovirt-vm:imageID>{A.image_id}</ovirt-vm:imageID>
        <ovirt-vm:poolID>{A.pool_id}</ovirt-vm:poolID>
        <ovirt-vm:volumeID>{A.volume_id}</ovirt-vm:volumeID>
        <ovirt-vm:change>
          <ovirt-vm:domainID>{B.domain_id}</ovirt-vm:domainID>
          <ovirt-vm:imageID>{B.image_id}</ovirt-vm:imageID>
          <ovirt-vm:poolID>{B.pool_id}</ovirt-vm:poolID>
          <ovirt-vm:state>loading</ovirt-vm:state>
          <ovirt-vm:volumeID>{B.volume_id}</ovirt-vm:volumeID>
        </ovirt-vm:change>
      </ovirt-vm:device>
    </ovirt-vm:vm>"""
    assert read_entries(parse_block(xml), SDC) == (
        CdEntry(EntryState.EJECTING, A), CdEntry(EntryState.LOADING, B))


# vdsm 4.50's eject of a CD its entry names no volume for (cd_test.py's
# EJECTING_CD_NO_PDIV_METADATA_XML), as vdsm writes it.
VDSM_EJECTING_NO_PDIV = (f'<ovirt-vm:vm xmlns:ovirt-vm="{NS}"><ovirt-vm:device devtype="disk" '
                         'name="sdc"><ovirt-vm:change><ovirt-vm:state>ejecting</ovirt-vm:state>'
                         "</ovirt-vm:change></ovirt-vm:device></ovirt-vm:vm>")


def test_vdsm_eject_marker_without_pdiv_reads_as_an_eject_of_no_volume() -> None:
    assert read_entries(parse_block(VDSM_EJECTING_NO_PDIV), SDC) == (
        CdEntry(EntryState.EJECTING, None),)
    assert CdromSlot.read(read_entries(parse_block(VDSM_EJECTING_NO_PDIV), SDC)) == \
        CdromSlot(ejecting=True)


def test_vdsm_eject_marker_without_pdiv_is_written_as_vdsm_writes_it() -> None:
    root = parse_block(f'<ovirt-vm:vm xmlns:ovirt-vm="{NS}"/>')
    write_entries(root, SDC, CdromSlot(ejecting=True).entries(), Encoding.VDSM_450)
    assert etree.tostring(root, method="c14n") == \
        etree.tostring(parse_block(VDSM_EJECTING_NO_PDIV), method="c14n")


def test_unreadable_entries_name_every_clear_pdiv_they_hold() -> None:
    fake = _PDIV_B.replace(B.pool_id, "pool-id")
    root = parse_block(_block(f'<ovirt-vm:device devtype="disk" name="sdc">{_PDIV_A}'
                              "<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>"
                              f"{fake}</ovirt-vm:change></ovirt-vm:device>"))
    read = read_entries(root, SDC)
    assert isinstance(read, Unreadable)
    assert read.volumes == (A,)
    assert "poolID" in read.reason


@given(st.sampled_from(list(SHAPES)), st.sampled_from(list(Encoding)),
       st.lists(st.sampled_from(list(SHAPES)), max_size=4))
def test_any_write_sequence_reads_back_the_last(last: str, encoding: Encoding,
                                                 earlier: list[str]) -> None:
    root = parse_block(VDSM_BLOCK)
    before = others(root)
    for name in [*earlier, last]:
        write_entries(root, SDC, SHAPES[name].entries(), encoding)
    reparsed = parse_block(metadata_xml.serialize(root))
    assert CdromSlot.read(read_entries(reparsed, SDC)) == SHAPES[last]
    assert others(reparsed) == before


# --- Hostile and corrupt input ------------------------------------------------------------

_PDIV_A = "".join(f"<ovirt-vm:{k}>{v}</ovirt-vm:{k}>" for k, v in A.as_dict().items())
_PDIV_B = "".join(f"<ovirt-vm:{k}>{v}</ovirt-vm:{k}>" for k, v in B.as_dict().items())


def _block(body: str) -> str:
    return f'<ovirt-vm:vm xmlns:ovirt-vm="{NS}">{body}</ovirt-vm:vm>'


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
    assert read_entries(root, SDC) == ()


CORRUPT = {
    "two-loading": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc" state="loading">{_PDIV_A}</ovirt-vm:device>'
        f'<ovirt-vm:device devtype="disk" name="sdc" state="loading">{_PDIV_B}</ovirt-vm:device>'),
    "change-plus-state": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc" state="ejecting">{_PDIV_A}'
        f"<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>{_PDIV_B}"
        "</ovirt-vm:change></ovirt-vm:device>"),
    "two-changes": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc">{_PDIV_A}'
        f"<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>{_PDIV_B}</ovirt-vm:change>"
        "<ovirt-vm:change><ovirt-vm:state>ejecting</ovirt-vm:state></ovirt-vm:change>"
        "</ovirt-vm:device>"),
    "change-beside-an-entry": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc">{_PDIV_A}'
        f"<ovirt-vm:change><ovirt-vm:state>loading</ovirt-vm:state>{_PDIV_B}</ovirt-vm:change>"
        "</ovirt-vm:device>"
        f'<ovirt-vm:device devtype="disk" name="sdc" state="ejecting">{_PDIV_A}'
        "</ovirt-vm:device>"),
    "unknown-state": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc" state="busy">{_PDIV_A}</ovirt-vm:device>'),
    "change-without-state": _block(
        f'<ovirt-vm:device devtype="disk" name="sdc">{_PDIV_A}'
        f"<ovirt-vm:change>{_PDIV_B}</ovirt-vm:change></ovirt-vm:device>"),
    "loading-change-without-volume": _block(
        '<ovirt-vm:device devtype="disk" name="sdc"><ovirt-vm:change>'
        "<ovirt-vm:state>loading</ovirt-vm:state></ovirt-vm:change></ovirt-vm:device>"),
    "incomplete-pdiv": _block(
        '<ovirt-vm:device devtype="disk" name="sdc">'
        f"<ovirt-vm:volumeID>{A.volume_id}</ovirt-vm:volumeID></ovirt-vm:device>"),
    "path-in-uuid": _block(
        '<ovirt-vm:device devtype="disk" name="sdc">'
        + _PDIV_A.replace(A.image_id, "../../../dev/sda") + "</ovirt-vm:device>"),
    "loading-without-volume": _block(
        '<ovirt-vm:device devtype="disk" name="sdc" state="loading"/>'),
}


@pytest.mark.parametrize("text", CORRUPT.values(), ids=CORRUPT.keys())
def test_conflicting_or_corrupt_entries_are_unreadable(text: str) -> None:
    root = parse_block(text)
    assert isinstance(CdromSlot.read(read_entries(root, SDC)), Unreadable)


@pytest.mark.parametrize("text", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_entries_of_sdc_do_not_stop_reading_sda(text: str) -> None:
    root = parse_block(text)
    assert read_entries(root, SDA) == ()
