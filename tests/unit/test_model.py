"""The domain's value objects and the CD-ROM slot entity."""

from __future__ import annotations

import itertools
import string
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ovirt_cdrom.domain.errors import InvalidMetadata, InvalidParameter
from ovirt_cdrom.domain.model import (
    CdEntry,
    CdromSlot,
    DriveKey,
    DriveName,
    EntryState,
    LoadPath,
    VmId,
    VolumeRef,
    VolumeUsers,
)

from .values import A, B, C, volume

LOADING, EJECTING = EntryState.LOADING, EntryState.EJECTING

# --- DriveName ---------------------------------------------------------------------------


def _names_in_order(max_len: int) -> list[str]:
    """Bijective base-26 enumerated independently: every name of length 1, then 2, ..."""
    return ["".join(p) for n in range(1, max_len + 1)
            for p in itertools.product(string.ascii_lowercase, repeat=n)]


@pytest.mark.parametrize(("iface", "index", "name"), [
    ("sata", 0, "sda"),
    ("sata", 2, "sdc"),
    ("sata", "2", "sdc"),
    ("scsi", 2, "sdc"),
    ("ide", 2, "hdc"),
    ("virtio", 2, "vdc"),
    ("sata", 25, "sdz"),
    ("sata", 26, "sdaa"),
    ("sata", "26", "sdaa"),
    ("sata", 701, "sdzz"),
    ("sata", 702, "sdaaa"),
    ("ide", 0, "hda"),
], ids=repr)
def test_drive_name_from_iface_index_as_vdsm(iface: str, index: object, name: str) -> None:
    assert DriveName.from_iface_index(iface, index).value == name


def test_drive_name_letters_are_bijective_base26_for_every_accepted_index() -> None:
    expected = _names_in_order(3)
    got = [DriveName.from_iface_index("sata", i).value for i in range(len(expected))]
    assert got == ["sd" + letters for letters in expected]
    assert len(set(got)) == len(got)


@given(st.integers(min_value=0, max_value=18277))
def test_drive_name_index_as_string_equals_index_as_int(index: int) -> None:
    assert (DriveName.from_iface_index("virtio", str(index))
            == DriveName.from_iface_index("virtio", index))


@pytest.mark.parametrize("iface", ["usb", "SATA", "", "fdc", None, 2, b"sata", ["sata"]],
                         ids=repr)
def test_drive_name_refuses_unknown_iface(iface: object) -> None:
    with pytest.raises(InvalidParameter) as exc:
        DriveName.from_iface_index(iface, 2)
    assert exc.value.field == "iface"
    assert exc.value.code == 100


@pytest.mark.parametrize("index", [
    True, False, -1, "-1", 2.0, 2.5, "2.5", "", " 2", "2 ", "0x2", "two", "\u0662",
    None, [2], 18278, 10**9, "99999999", "1" * 100,
], ids=repr)
def test_drive_name_refuses_bad_index(index: object) -> None:
    with pytest.raises(InvalidParameter) as exc:
        DriveName.from_iface_index("sata", index)
    assert exc.value.field == "index"
    assert "index" in exc.value.message


@pytest.mark.parametrize("value", ["sdc", "hda", "vdzzz"])
def test_drive_name_parse_accepts_names(value: str) -> None:
    assert DriveName.parse(value).value == value


@pytest.mark.parametrize("value", ["sdC", "xda", "sd", "sdc/../x", "sdc\n", "sdaaaa", 3, None],
                         ids=repr)
def test_drive_name_parse_refuses_others(value: object) -> None:
    with pytest.raises(InvalidParameter):
        DriveName.parse(value)


# --- VolumeRef ---------------------------------------------------------------------------


def _spec(**override: object) -> dict[str, Any]:
    spec: dict[str, Any] = {"device": "cdrom", **A.as_dict()}
    spec.update(override)
    return spec


def test_volume_ref_parse_valid() -> None:
    assert VolumeRef.parse(_spec()) == A
    assert VolumeRef.parse(A.as_dict()).as_dict() == A.as_dict()


def test_volume_ref_parse_canonicalises_upper_case() -> None:
    upper = {k: v.upper() for k, v in A.as_dict().items()}
    assert VolumeRef.parse(upper) == A


@pytest.mark.parametrize("key", VolumeRef.KEYS)
def test_volume_ref_parse_missing_key_names_it(key: str) -> None:
    spec = _spec()
    del spec[key]
    with pytest.raises(InvalidParameter) as exc:
        VolumeRef.parse(spec)
    assert exc.value.field == f"drive_spec.{key}"


@pytest.mark.parametrize("bad", [
    "not-a-uuid",
    "../..",
    "../../../../dev/sda",
    "88252cf6-381e-48f0-8795-a294a32c7149/../..",
    "<ovirt-vm:device/>",
    "88252cf6-381e-48f0-8795-a294a32c7149\"/><x y=\"",
    "88252cf6-381e-48f0-8795-a294a32c714&amp;",
    "{88252cf6-381e-48f0-8795-a294a32c7149}",
    "88252cf6381e48f08795a294a32c7149",
    "88252cf6-381e-48f0-8795-a294a32c7149\x00",
    "88252cf6-381e-48f0-8795-a294a32c7149" + " " * 40,
    "",
    "*",
], ids=repr)
@pytest.mark.parametrize("key", VolumeRef.KEYS)
def test_volume_ref_parse_refuses_non_uuid(key: str, bad: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        VolumeRef.parse(_spec(**{key: bad}))
    assert exc.value.field == f"drive_spec.{key}"


@pytest.mark.parametrize("bad", [None, 1, 1.5, ["a"], {"a": 1}, b"88252cf6"], ids=repr)
def test_volume_ref_parse_refuses_wrong_types(bad: object) -> None:
    with pytest.raises(InvalidParameter) as exc:
        VolumeRef.parse(_spec(volumeID=bad))
    assert exc.value.field == "drive_spec.volumeID"


@pytest.mark.parametrize("spec", [None, "poolID", ["poolID"], 3], ids=repr)
def test_volume_ref_parse_refuses_non_mapping(spec: object) -> None:
    with pytest.raises(InvalidParameter) as exc:
        VolumeRef.parse(spec)
    assert exc.value.field == "drive_spec"


@given(st.text(max_size=80))
def test_volume_ref_accepts_only_canonical_uuids(text: str) -> None:
    try:
        ref = VolumeRef.parse(_spec(imageID=text))
    except InvalidParameter:
        return
    assert ref.image_id == str(uuid.UUID(ref.image_id))
    assert set(ref.image_id) <= set("0123456789abcdef-")


def test_volume_ref_is_at_matches_only_its_suffix() -> None:
    assert A.is_at(f"/rhev/data-center/mnt/blockSD/{A.domain_id}/images/"
                   f"{A.image_id}/{A.volume_id}")
    assert not A.is_at(f"/rhev/data-center/mnt/blockSD/{B.domain_id}/images/"
                       f"{B.image_id}/{B.volume_id}")
    assert not A.is_at(None)


def test_vm_id_parse() -> None:
    assert VmId.parse(A.pool_id.upper()).value == A.pool_id
    with pytest.raises(InvalidParameter) as exc:
        VmId.parse("vm1")
    assert exc.value.field == "vmID"


# --- LoadPath ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/iso/fedora.iso", "/a/..b/c.iso", "/rhev/x y.iso"])
def test_load_path_accepts_absolute_paths(path: str) -> None:
    assert LoadPath.parse(path).path == path


@pytest.mark.parametrize("path", [
    "", "fedora.iso", "./fedora.iso", "/iso/../etc/passwd", "/..", "/iso/\x00.iso",
    "/" + "a" * 5000, None, 3, b"/iso/x.iso",
], ids=lambda p: repr(p)[:40])
def test_load_path_refuses_bad_paths(path: object) -> None:
    with pytest.raises(InvalidParameter) as exc:
        LoadPath.parse(path)
    assert exc.value.field == "path"


# --- CdromSlot: shapes, entries, transitions -------------------------------------------

SHAPES = {
    "empty": CdromSlot(),
    "settled": CdromSlot(current=A),
    "inserting": CdromSlot(loading=B),
    "ejecting": CdromSlot(current=A, ejecting=True),
    "changing": CdromSlot(current=A, loading=B),
    "switched": CdromSlot(current=B, stale=A),
}

ENTRIES = {
    "empty": (CdEntry(None, None),),
    "settled": (CdEntry(None, A),),
    "inserting": (CdEntry(LOADING, B),),
    "ejecting": (CdEntry(EJECTING, A),),
    "changing": (CdEntry(EJECTING, A), CdEntry(LOADING, B)),
    "switched": (CdEntry(None, B), CdEntry(EJECTING, A)),
}


@pytest.mark.parametrize("name", SHAPES)
def test_slot_entries_are_the_designs(name: str) -> None:
    assert SHAPES[name].entries() == ENTRIES[name]


@pytest.mark.parametrize("name", SHAPES)
def test_slot_entries_round_trip(name: str) -> None:
    slot = SHAPES[name]
    assert CdromSlot.from_entries(slot.entries()) == slot
    assert CdromSlot.from_entries(reversed(slot.entries())) == slot


def test_no_entries_is_an_empty_tray() -> None:
    assert CdromSlot.from_entries(()) == CdromSlot()


@pytest.mark.parametrize(("entries", "slot"), [
    # An eject whose empty entry was written beside the marker.
    ((CdEntry(None, None), CdEntry(EJECTING, A)), CdromSlot(current=A, ejecting=True)),
    # The same volume settled and ejecting: the tray still holds it.
    ((CdEntry(None, A), CdEntry(EJECTING, A)), CdromSlot(current=A)),
    # vdsm 4.50 ejecting a CD no entry names (one loaded by path).
    ((CdEntry(EJECTING, None),), CdromSlot(ejecting=True)),
    # vdsm 4.50 loading the CD the entry already names: whichever the tray holds stays.
    ((CdEntry(EJECTING, A), CdEntry(LOADING, A)), CdromSlot(current=A, ejecting=True)),
], ids=["empty-beside-ejecting", "same-volume-settled-and-ejecting", "ejecting-no-volume",
        "reloading-the-same-volume"])
def test_slot_reads_tolerated_entry_pairs(entries: tuple[CdEntry, ...],
                                          slot: CdromSlot) -> None:
    assert CdromSlot.from_entries(entries) == slot


@pytest.mark.parametrize("entries", [
    (CdEntry(LOADING, A), CdEntry(LOADING, B)),
    (CdEntry(EJECTING, A), CdEntry(EJECTING, B)),
    (CdEntry(None, A), CdEntry(None, B)),
    (CdEntry(None, A), CdEntry(LOADING, B)),
    (CdEntry(LOADING, None),),
    (CdEntry(EJECTING, A), CdEntry(LOADING, B), CdEntry(None, C)),
    (CdEntry(None, A), CdEntry(None, A), CdEntry(None, A)),
], ids=lambda e: "+".join(f"{x.state.value if x.state else 'none'}" for x in e))
def test_slot_refuses_entries_the_flows_never_write(entries: tuple[CdEntry, ...]) -> None:
    with pytest.raises(InvalidMetadata):
        CdromSlot.from_entries(entries)


@pytest.mark.parametrize("kwargs", [
    {"stale": A},
    {"current": A, "loading": B, "ejecting": True},
    {"current": A, "loading": B, "stale": C},
    {"current": A, "ejecting": True, "stale": B},
    {"current": A, "loading": A},
    {"current": A, "stale": A},
], ids=lambda k: ",".join(sorted(k)))
def test_slot_refuses_invalid_combinations(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidMetadata):
        CdromSlot(**kwargs)


_volumes = st.sampled_from([A, B, C])
_entries = st.builds(CdEntry, st.sampled_from([None, LOADING, EJECTING]),
                     st.one_of(st.none(), _volumes))


@given(st.lists(_entries, max_size=3))
def test_any_readable_entries_round_trip(entries: list[CdEntry]) -> None:
    try:
        slot = CdromSlot.from_entries(entries)
    except InvalidMetadata:
        return
    assert CdromSlot.from_entries(slot.entries()) == slot
    # What was read names every volume the entries named.
    assert {e.volume for e in entries if e.volume} == set(slot.volumes)


@st.composite
def slots(draw: st.DrawFn) -> CdromSlot:
    """Any valid slot: every shape, over distinct volumes."""
    old, new = draw(st.permutations([A, B, C]))[:2]
    current = draw(st.one_of(st.none(), st.just(old)))
    kind = draw(st.sampled_from(["settled", "load", "eject", "switched"]))
    if kind == "load":
        return CdromSlot(current=current).begin_load(new)
    if kind == "eject" and current is not None:
        return CdromSlot(current=current).begin_eject()
    if kind == "switched" and current is not None:
        return CdromSlot(current=new, stale=current)
    return CdromSlot(current=current)


@given(slots())
def test_generated_slots_round_trip(slot: CdromSlot) -> None:
    assert CdromSlot.from_entries(slot.entries()) == slot
    assert CdromSlot.from_entries(reversed(slot.entries())) == slot


def test_begin_load_into_empty_tray() -> None:
    assert CdromSlot().begin_load(B) == CdromSlot(loading=B)


def test_begin_load_over_a_cd_marks_it_ejecting() -> None:
    pending = CdromSlot(current=A).begin_load(B)
    assert pending == CdromSlot(current=A, loading=B)
    assert pending.entries() == ENTRIES["changing"]


def test_begin_eject() -> None:
    assert CdromSlot(current=A).begin_eject() == CdromSlot(current=A, ejecting=True)


def test_begin_eject_of_empty_tray_is_refused() -> None:
    with pytest.raises(InvalidMetadata):
        CdromSlot().begin_eject()


@pytest.mark.parametrize("name", ["inserting", "ejecting", "changing", "switched"])
def test_nothing_begins_while_a_change_is_pending(name: str) -> None:
    with pytest.raises(InvalidMetadata):
        SHAPES[name].begin_load(C)
    with pytest.raises(InvalidMetadata):
        SHAPES[name].begin_eject()


@pytest.mark.parametrize(("name", "torn_down", "after"), [
    ("inserting", True, CdromSlot(current=B)),
    ("inserting", False, CdromSlot(current=B)),  # no old volume to keep a marker for
    ("changing", True, CdromSlot(current=B)),
    ("changing", False, CdromSlot(current=A, loading=B)),
    ("ejecting", True, CdromSlot()),
    ("ejecting", False, CdromSlot(current=A, ejecting=True)),
    ("settled", True, CdromSlot(current=A)),
    ("empty", True, CdromSlot()),
    ("switched", True, CdromSlot(current=B)),
    ("switched", False, CdromSlot(current=B, stale=A)),
])
def test_apply(name: str, torn_down: bool, after: CdromSlot) -> None:
    assert SHAPES[name].apply(old_torn_down=torn_down) == after


@pytest.mark.parametrize(("name", "after"), [
    ("inserting", CdromSlot()),
    ("changing", CdromSlot(current=A)),
    ("ejecting", CdromSlot(current=A)),
    ("settled", CdromSlot(current=A)),
    ("empty", CdromSlot()),
])
def test_discard(name: str, after: CdromSlot) -> None:
    assert SHAPES[name].discard() == after


@pytest.mark.parametrize("name", SHAPES)
def test_settled_and_volumes(name: str) -> None:
    slot = SHAPES[name]
    assert slot.settled == (name in ("empty", "settled"))
    assert set(slot.volumes) == {e.volume for e in ENTRIES[name] if e.volume}


# --- VolumeUsers -------------------------------------------------------------------------

VM1 = VmId("6f4b1f2e-0c1d-4a8e-9b7a-3c2d1e0f9a8b")
VM2 = VmId("0b7c2f0e-3f7a-4b1e-8d8e-4a0a9c6f1d2e")
K1 = DriveKey(VM1, DriveName("sdc"))
K2 = DriveKey(VM2, DriveName("sdc"))
K3 = DriveKey(VM1, DriveName("sdd"))


def test_volume_users_release_reports_the_last_user() -> None:
    users = VolumeUsers()
    users.claim(A, K1)
    users.claim(A, K2)
    users.claim(A, K2)  # claiming twice is one user
    assert users.users(A) == {K1, K2}
    assert users.others(A, K1) == {K2}
    assert users.release(A, K1) is False
    assert users.release(A, K2) is True
    assert users.users(A) == frozenset()
    assert users.snapshot() == {}


def test_volume_users_release_of_unknown_volume_is_last() -> None:
    assert VolumeUsers().release(A, K1) is True


def test_volume_users_forget_drive() -> None:
    users = VolumeUsers()
    users.claim(A, K1)
    users.claim(B, K1)
    users.claim(B, K3)
    users.forget_drive(K1)
    assert users.snapshot() == {B: frozenset({K3})}
    users.clear()
    assert users.snapshot() == {}


@given(st.lists(st.tuples(st.booleans(), st.sampled_from([A, B]),
                          st.sampled_from([K1, K2, K3])), max_size=30))
def test_volume_users_match_a_set_model(ops: list[tuple[bool, VolumeRef, DriveKey]]) -> None:
    users = VolumeUsers()
    model: dict[VolumeRef, set[DriveKey]] = {}
    for claim, vol, key in ops:
        if claim:
            users.claim(vol, key)
            model.setdefault(vol, set()).add(key)
        else:
            last = users.release(vol, key)
            model.get(vol, set()).discard(key)
            assert last == (not model.get(vol))
    assert users.snapshot() == {v: frozenset(k) for v, k in model.items() if k}


def test_volume_helper_is_deterministic() -> None:
    assert volume(1) == A and volume(2) == B and A != B
