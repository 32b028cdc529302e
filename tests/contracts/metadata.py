"""The MetadataRepository contract, for the in-memory adapter and libvirt alike.

A test class inherits :class:`MetadataContract` and provides ``md_env`` returning a
:class:`MetadataEnv`: a repository, a VM whose block holds vdsm's unrelated content and an
empty ``sdc`` entry, a VM with no metadata at all, and a way to read the whole block.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.domain.errors import NoSuchVM
from ovirt_cdrom.domain.model import (
    EMPTY_ENTRY,
    CdEntry,
    CdromSlot,
    DriveName,
    Unreadable,
    VmId,
    VolumeRef,
)
from ovirt_cdrom.ports import MetadataRepository

SDC = DriveName("sdc")
SDD = DriveName("sdd")


def volume(n: int) -> VolumeRef:
    return VolumeRef(*(str(uuid.uuid5(uuid.NAMESPACE_OID, f"contract-{k}-{n}"))
                       for k in ("pool", "domain", "image", "volume")))


A, B = volume(1), volume(2)

# Every shape the flows write, by name.
SLOTS = {
    "empty": CdromSlot(),
    "current": CdromSlot(current=A),
    "loading-into-empty": CdromSlot(loading=A),
    "change": CdromSlot(current=A, loading=B),
    "ejecting": CdromSlot(current=A, ejecting=True),
    "stale": CdromSlot(current=B, stale=A),
}


@dataclass
class MetadataEnv:
    repo: MetadataRepository
    make_repo: Callable[[metadata_xml.Encoding], MetadataRepository]
    vm: VmId  # seeded with vdsm's unrelated metadata and an empty sdc entry
    bare_vm: VmId  # no metadata at all
    block: Callable[[VmId], etree._Element]  # the whole ovirt-vm block, qualified
    seed: Callable[[VmId, str], None]  # replace the whole block by this XML


def unrelated(block: etree._Element, drives: tuple[DriveName, ...] = (SDC, SDD)) -> str:
    """Canonical XML of the block without our CD-ROM entries and blank text."""
    copy = etree.fromstring(etree.tostring(block))
    names = {d.value for d in drives}
    for el in list(copy.iterchildren(f"{{{metadata_xml.NS}}}device")):
        if el.get("name") in names and el.get("devtype", "disk") == "disk":
            copy.remove(el)
    for el in copy.iter():
        if el.tail is not None and not el.tail.strip():
            el.tail = None
        if len(el) and el.text is not None and not el.text.strip():
            el.text = None
    return etree.tostring(copy, method="c14n").decode()


def child_order(block: etree._Element) -> list[str]:
    """The top-level elements in order, with a CD-ROM entry shown as ``cd``."""
    out = []
    for el in block:
        if not isinstance(el.tag, str):
            continue
        name = el.get("name")
        out.append("cd" if name == SDC.value else f"{etree.QName(el).localname}:{name}")
    return [k for i, k in enumerate(out) if k != "cd" or i == 0 or out[i - 1] != "cd"]


class MetadataContract:
    def test_seeded_drive_reads_as_empty_entry(self, md_env: MetadataEnv) -> None:
        assert md_env.repo.read(md_env.vm, SDC) == (EMPTY_ENTRY,)

    def test_vm_without_metadata_has_no_entries(self, md_env: MetadataEnv) -> None:
        assert md_env.repo.read(md_env.bare_vm, SDC) == ()
        assert md_env.repo.read_all(md_env.bare_vm, [SDC, SDD]) == {SDC: (), SDD: ()}

    @pytest.mark.parametrize("encoding", list(metadata_xml.Encoding), ids=lambda e: e.value)
    @pytest.mark.parametrize("shape", list(SLOTS))
    def test_write_then_read_returns_what_was_written(
            self, md_env: MetadataEnv, shape: str, encoding: metadata_xml.Encoding) -> None:
        repo = md_env.make_repo(encoding)
        entries = SLOTS[shape].entries()
        repo.write(md_env.vm, SDC, entries)
        assert repo.read(md_env.vm, SDC) == entries
        # Whatever the encoding, the other one reads it too (upgrades from vdsm 4.50).
        other = next(e for e in metadata_xml.Encoding if e is not encoding)
        assert md_env.make_repo(other).read(md_env.vm, SDC) == entries

    @pytest.mark.parametrize("shape", list(SLOTS))
    def test_write_leaves_unrelated_metadata_alone(self, md_env: MetadataEnv,
                                                   shape: str) -> None:
        before = md_env.block(md_env.vm)
        md_env.repo.write(md_env.vm, SDC, SLOTS[shape].entries())
        after = md_env.block(md_env.vm)
        assert unrelated(after) == unrelated(before)
        assert child_order(after) == child_order(before)

    def test_write_on_a_vm_without_metadata_creates_the_block(
            self, md_env: MetadataEnv) -> None:
        md_env.repo.write(md_env.bare_vm, SDC, SLOTS["current"].entries())
        assert md_env.repo.read(md_env.bare_vm, SDC) == (CdEntry(None, A),)

    def test_read_all_reads_each_drive(self, md_env: MetadataEnv) -> None:
        md_env.repo.write(md_env.vm, SDC, SLOTS["change"].entries())
        assert md_env.repo.read_all(md_env.vm, [SDC, SDD]) == {
            SDC: SLOTS["change"].entries(), SDD: ()}

    def test_writing_one_drive_keeps_the_other(self, md_env: MetadataEnv) -> None:
        md_env.repo.write(md_env.vm, SDD, SLOTS["current"].entries())
        md_env.repo.write(md_env.vm, SDC, SLOTS["change"].entries())
        assert md_env.repo.read(md_env.vm, SDD) == SLOTS["current"].entries()

    def test_conflicting_entries_are_invalid(self, md_env: MetadataEnv) -> None:
        ns = metadata_xml.NS
        pdiv = "".join(f"<ovirt-vm:{k}>{v}</ovirt-vm:{k}>" for k, v in A.as_dict().items())
        md_env.seed(md_env.vm, (
            f'<ovirt-vm:vm xmlns:ovirt-vm="{ns}">'
            + f'<ovirt-vm:device devtype="disk" name="sdc" state="loading">{pdiv}'
              '</ovirt-vm:device>' * 3
            + "</ovirt-vm:vm>"))
        assert isinstance(CdromSlot.read(md_env.repo.read(md_env.vm, SDC)), Unreadable)

    @pytest.mark.parametrize("call", ["read", "read_all", "write"])
    def test_unknown_vm_is_no_such_vm(self, md_env: MetadataEnv, call: str) -> None:
        vm, repo = VmId(str(uuid.uuid4())), md_env.repo
        calls: dict[str, Callable[[], object]] = {
            "read": lambda: repo.read(vm, SDC),
            "read_all": lambda: repo.read_all(vm, [SDC]),
            "write": lambda: repo.write(vm, SDC, ()),
        }
        with pytest.raises(NoSuchVM):
            calls[call]()
