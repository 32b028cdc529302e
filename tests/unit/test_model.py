"""The domain's values: identifiers, what a tray holds, and the drive's state (one class per
state of the design, each holding exactly its volumes)."""

from __future__ import annotations

import dataclasses
import itertools
import string
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ovirt_cdrom.adapters.vdsm_layout import block_path
from ovirt_cdrom.domain.errors import InvalidParameter
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    DriveKey,
    DriveName,
    FileTray,
    LoadPath,
    VmId,
    VolumeRef,
    VolumeTray,
)
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
    consistent,
    in_tray,
    settled,
)
from ovirt_cdrom.domain.users import VolumeUsers
from rig import DOMAIN, uid, vm_id, volume

A, B, C = volume("a"), volume("b"), volume("c")

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
    with pytest.raises(InvalidParameter) as exc:
        DriveName.parse(value)
    assert exc.value.field == "drive"


def test_drive_names_order_and_show_as_their_value() -> None:
    names = [DriveName.parse(n) for n in ("sdd", "hdc", "sdc")]
    assert [str(n) for n in sorted(names)] == ["hdc", "sdc", "sdd"]
    key = DriveKey(vm_id("vm"), DriveName("sdc"))
    assert str(key) == f"{uid('vm', 'vm')}/sdc"


# --- VolumeRef ---------------------------------------------------------------------------


def _spec(**override: object) -> dict[str, Any]:
    spec: dict[str, Any] = {"device": "cdrom", **A.as_dict()}
    spec.update(override)
    return spec


def test_volume_ref_parse_valid() -> None:
    assert VolumeRef.parse(_spec()) == A
    assert VolumeRef.parse(A.as_dict()).as_dict() == A.as_dict()
    assert list(A.as_dict()) == list(VolumeRef.KEYS)


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
    f"{DOMAIN}/../..",
    "<ovirt-vm:device/>",
    f'{DOMAIN}"/><x y="',
    DOMAIN[:-1] + "&amp;",
    "{" + DOMAIN + "}",
    DOMAIN.replace("-", ""),
    DOMAIN + "\x00",
    DOMAIN + " " * 40,
    "",
    "*",
], ids=repr)
@pytest.mark.parametrize("key", VolumeRef.KEYS)
def test_volume_ref_parse_refuses_non_uuid(key: str, bad: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        VolumeRef.parse(_spec(**{key: bad}))
    assert exc.value.field == f"drive_spec.{key}"


@pytest.mark.parametrize("bad", [None, 1, 1.5, ["a"], {"a": 1}, DOMAIN[:8].encode()], ids=repr)
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


def test_volume_ref_in_tray_matches_only_its_own_volume() -> None:
    assert A.in_tray(VolumeTray(A.domain_id, A.image_id, A.volume_id))
    assert not A.in_tray(VolumeTray(B.domain_id, B.image_id, B.volume_id))
    # Each coordinate counts: the same volume id under another image or domain is another.
    assert not A.in_tray(VolumeTray(A.domain_id, B.image_id, A.volume_id))
    assert not A.in_tray(VolumeTray(B.domain_id + "x", A.image_id, A.volume_id))
    assert not A.in_tray(EMPTY_TRAY)
    # A file is a file, whatever its path looks like: the adapters tell volumes apart.
    assert not A.in_tray(FileTray(block_path(A)))


def test_a_tray_shows_no_pool() -> None:
    other_pool = VolumeRef(uid("other-pool"), A.domain_id, A.image_id, A.volume_id)
    assert other_pool.in_tray(VolumeTray(A.domain_id, A.image_id, A.volume_id))


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


# --- DriveState: the design's states, each with exactly its volumes ----------------------

STATES: dict[str, DriveState] = {
    "empty": EMPTY,
    "loaded": Loaded(A),
    "inserting": Inserting(B),
    "ejecting": Ejecting(A),
    "ejecting-unnamed": Ejecting(None),
    "changing": Changing(A, B),
    "switched": Switched(B, A),
}
VOLUMES = {"empty": (), "loaded": (A,), "inserting": (B,), "ejecting": (A,),
           "ejecting-unnamed": (), "changing": (A, B), "switched": (B, A)}


def test_each_state_has_exactly_its_fields() -> None:
    fields = {cls.__name__: [f.name for f in dataclasses.fields(cls)]
              for cls in (Empty, Loaded, Inserting, Ejecting, Changing, Switched, Unreadable)}
    assert fields == {"Empty": [], "Loaded": ["volume"], "Inserting": ["new"],
                      "Ejecting": ["old"], "Changing": ["old", "new"],
                      "Switched": ["current", "old"], "Unreadable": ["reason", "volumes"]}


@pytest.mark.parametrize("name", STATES)
def test_state_volumes(name: str) -> None:
    assert STATES[name].volumes == VOLUMES[name]


@pytest.mark.parametrize("name", STATES)
def test_only_empty_and_loaded_are_settled(name: str) -> None:
    assert isinstance(STATES[name], Empty | Loaded) == (name in ("empty", "loaded"))


def test_a_change_to_the_same_volume_is_refused() -> None:
    with pytest.raises(ValueError, match="itself"):
        Changing(A, A)


def test_a_switch_to_the_same_volume_is_refused() -> None:
    with pytest.raises(ValueError, match="itself"):
        Switched(A, A)


def test_states_are_values() -> None:
    assert Changing(A, B) == Changing(A, B) != Changing(B, A)
    assert len({Loaded(A), Loaded(A), EMPTY, Empty()}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        Loaded(A).volume = B  # type: ignore[misc]


def test_unreadable_names_what_it_salvaged() -> None:
    state = Unreadable("conflicting CD-ROM entries", (A, B))
    assert state.volumes == (A, B)
    assert "conflicting" in str(state)
    assert Unreadable("x").volumes == ()


def test_settled_names_a_volume_or_nothing() -> None:
    assert settled(None) == EMPTY
    assert settled(A) == Loaded(A)


def tray(volume: VolumeRef) -> VolumeTray:
    return VolumeTray(volume.domain_id, volume.image_id, volume.volume_id)


@pytest.mark.parametrize(("state", "held", "expected"), [
    (EMPTY, EMPTY_TRAY, True),
    (EMPTY, FileTray("/iso/fedora.iso"), True),  # loaded by path: no metadata names it
    # A volume no metadata names: nothing recovery could do (a tray shows no pool, so no
    # entry can be written for it); the promise checker reports it.
    (EMPTY, tray(A), True),
    (Loaded(A), tray(A), True),
    (Loaded(A), tray(B), False),
    (Loaded(A), EMPTY_TRAY, False),
    (Inserting(B), tray(B), False),  # a marker is never consistent
    (Ejecting(A), EMPTY_TRAY, False),
    (Changing(A, B), tray(B), False),
    (Switched(B, A), tray(B), False),
    (Unreadable("x", (A,)), tray(A), False),
], ids=repr)
def test_consistent_is_settled_and_naming_the_tray(state: DriveState, held: Any,
                                                   expected: bool) -> None:
    assert consistent(state, held) is expected


def test_in_tray_finds_the_states_volume_the_tray_holds() -> None:
    assert in_tray(Changing(A, B), tray(B)) == B
    assert in_tray(Changing(A, B), tray(A)) == A
    assert in_tray(Changing(A, B), tray(C)) is None
    assert in_tray(Switched(B, A), EMPTY_TRAY) is None
    assert in_tray(Unreadable("x", (A, C)), tray(C)) == C


# --- VolumeUsers -------------------------------------------------------------------------

K1 = DriveKey(vm_id(1), DriveName("sdc"))
K2 = DriveKey(vm_id(2), DriveName("sdc"))
K3 = DriveKey(vm_id(1), DriveName("sdd"))


def test_volume_users_release_answers_who_still_uses_it() -> None:
    users = VolumeUsers()
    users.claim(A, K1)
    users.claim(A, K2)
    users.claim(A, K2)  # claiming twice is one user
    assert users.users(A) == {K1, K2}
    assert users.release(A, K1) == {K2}
    assert users.release(A, K2) == frozenset()  # the last user: tear it down
    assert users.users(A) == frozenset()
    assert users.snapshot() == {}
    assert users.holders() == []


def test_volume_users_release_of_unknown_volume_is_last() -> None:
    assert VolumeUsers().release(A, K1) == frozenset()


def test_volume_users_forget_drive() -> None:
    users = VolumeUsers()
    users.claim(A, K1)
    users.claim(B, K1)
    users.claim(B, K3)
    assert set(users.holders()) == {K1, K3}
    users.forget(K1)
    assert users.snapshot() == {B: frozenset({K3})}
    assert users.holders() == [K3]


@given(st.lists(st.tuples(st.sampled_from(["claim", "release", "forget"]),
                          st.sampled_from([A, B]), st.sampled_from([K1, K2, K3])),
                max_size=30))
def test_volume_users_match_a_set_model(ops: list[tuple[str, VolumeRef, DriveKey]]) -> None:
    users = VolumeUsers()
    model: dict[VolumeRef, set[DriveKey]] = {}
    for op, vol, key in ops:
        if op == "claim":
            users.claim(vol, key)
            model.setdefault(vol, set()).add(key)
        elif op == "release":
            others = users.release(vol, key)
            model.get(vol, set()).discard(key)
            assert others == model.get(vol, set())
        else:
            users.forget(key)
            for held in model.values():
                held.discard(key)
    assert users.snapshot() == {v: frozenset(k) for v, k in model.items() if k}
    assert set(users.holders()) == {k for held in model.values() for k in held}


def test_names_make_the_same_ids_in_every_test() -> None:
    assert volume("a") == A and volume("b") == B and A != B
    assert vm_id(1) == vm_id(1) != vm_id(2)
    assert str(uuid.UUID(uid("x"))) == uid("x")
