"""The MetadataRepository contract, for the in-memory adapter and libvirt alike.

A test class inherits :class:`MetadataContract` and provides ``md_env`` returning a
:class:`MetadataEnv`: a repository, a VM whose block holds vdsm's unrelated content and an
empty ``sdc`` entry, a VM with no metadata at all, and a way to read the whole block.
:func:`memory_md_env` is the in-memory host's.

A repository reads and writes a drive's :data:`~ovirt_cdrom.domain.state.DriveState`: every
state the flows write comes back as written, in either encoding, read by the other one too;
entries that make no sense read as ``Unreadable``, naming the volumes they name clearly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory import MemoryHost, MemoryMetadataRepository
from ovirt_cdrom.domain.errors import InvalidMetadata, NoSuchVM
from ovirt_cdrom.domain.model import DriveName, VmId, VolumeRef
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
from ovirt_cdrom.ports import MetadataRepository
from rig import unrelated_metadata, vm_id
from rig import volume as named_volume

SDC = DriveName("sdc")
SDD = DriveName("sdd")


def volume(n: int) -> VolumeRef:
    return named_volume(("metadata-contract", n))


A, B = volume(1), volume(2)

# Every state the flows and recovery write, by name.
STATES: dict[str, DriveState] = {
    "empty": EMPTY,
    "loaded": Loaded(A),
    "inserting": Inserting(A),
    "changing": Changing(A, B),
    "ejecting": Ejecting(A),
    "switched": Switched(B, A),
}


@dataclass
class MetadataEnv:
    repo: MetadataRepository
    make_repo: Callable[[metadata_xml.Encoding], MetadataRepository]
    vm: VmId  # seeded with vdsm's unrelated metadata and an empty sdc entry
    bare_vm: VmId  # no metadata at all
    block: Callable[[VmId], etree._Element]  # the whole ovirt-vm block, qualified
    seed: Callable[[VmId, str], None]  # replace the whole block by this XML


def seeded_metadata() -> str:
    """vdsm's unrelated metadata with the empty sdc element our flows leave, between two
    of vdsm's devices, and an element of another namespace at the end."""
    sda = '<ovirt-vm:device devtype="disk" name="sda">'
    return unrelated_metadata("metadata-contract").replace(
        sda, f'<ovirt-vm:device devtype="disk" name="sdc"/>\n    {sda}', 1).replace(
        "</ovirt-vm:vm>", '    <z:extension xmlns:z="urn:example:zz" z:flag="yes">'
        "<z:item>kept</z:item></z:extension>\n</ovirt-vm:vm>")


def memory_md_env() -> MetadataEnv:
    """The in-memory host: each VM's block as libvirt stores it."""
    host = MemoryHost()
    vm, bare = vm_id("metadata-contract"), vm_id("metadata-contract: bare")
    host.add_vm(vm, metadata=seeded_metadata())
    host.add_vm(bare)
    return MetadataEnv(MemoryMetadataRepository(host),
                       lambda enc: MemoryMetadataRepository(host, enc), vm, bare,
                       lambda target: host.vm(target).metadata.element(),
                       host.set_raw_metadata)


def unrelated(block: etree._Element, drives: tuple[DriveName, ...] = (SDC, SDD)) -> str:
    """Canonical XML of the block without our CD-ROM entries and blank text."""
    return metadata_xml.canonical(block, skip={d.value for d in drives})


def child_order(block: etree._Element) -> list[str]:
    """The top-level elements in order, with a CD-ROM entry shown as ``cd``."""
    out = []
    for el in block:
        if not isinstance(el.tag, str):
            continue
        name = el.get("name")
        out.append("cd" if name == SDC.value else f"{etree.QName(el).localname}:{name}")
    return [k for i, k in enumerate(out) if k != "cd" or i == 0 or out[i - 1] != "cd"]


def _pdiv(v: VolumeRef) -> str:
    return "".join(f"<ovirt-vm:{k}>{x}</ovirt-vm:{k}>" for k, x in v.as_dict().items())


class MetadataContract:
    def test_seeded_drive_reads_as_empty(self, md_env: MetadataEnv) -> None:
        assert md_env.repo.read(md_env.vm, SDC) == EMPTY

    def test_vm_without_metadata_reads_empty(self, md_env: MetadataEnv) -> None:
        assert md_env.repo.read(md_env.bare_vm, SDC) == EMPTY
        assert md_env.repo.read_all(md_env.bare_vm, [SDC, SDD]) == {SDC: EMPTY, SDD: EMPTY}

    @pytest.mark.parametrize("encoding", list(metadata_xml.Encoding), ids=lambda e: e.value)
    @pytest.mark.parametrize("state", list(STATES))
    def test_write_then_read_returns_what_was_written(
            self, md_env: MetadataEnv, state: str, encoding: metadata_xml.Encoding) -> None:
        repo = md_env.make_repo(encoding)
        repo.write(md_env.vm, SDC, STATES[state])
        assert repo.read(md_env.vm, SDC) == STATES[state]
        # Whatever the encoding, the other one reads it too (upgrades from vdsm 4.50).
        other = next(e for e in metadata_xml.Encoding if e is not encoding)
        assert md_env.make_repo(other).read(md_env.vm, SDC) == STATES[state]

    @pytest.mark.parametrize("state", list(STATES))
    def test_write_leaves_unrelated_metadata_alone(self, md_env: MetadataEnv,
                                                   state: str) -> None:
        before = md_env.block(md_env.vm)
        md_env.repo.write(md_env.vm, SDC, STATES[state])
        after = md_env.block(md_env.vm)
        assert unrelated(after) == unrelated(before)
        assert child_order(after) == child_order(before)

    def test_write_on_a_vm_without_metadata_creates_the_block(
            self, md_env: MetadataEnv) -> None:
        md_env.repo.write(md_env.bare_vm, SDC, Loaded(A))
        assert md_env.repo.read(md_env.bare_vm, SDC) == Loaded(A)

    def test_read_all_reads_each_drive(self, md_env: MetadataEnv) -> None:
        md_env.repo.write(md_env.vm, SDC, STATES["changing"])
        assert md_env.repo.read_all(md_env.vm, [SDC, SDD]) == {
            SDC: STATES["changing"], SDD: EMPTY}

    def test_writing_one_drive_keeps_the_other(self, md_env: MetadataEnv) -> None:
        md_env.repo.write(md_env.vm, SDD, Loaded(B))
        md_env.repo.write(md_env.vm, SDC, STATES["changing"])
        assert md_env.repo.read(md_env.vm, SDD) == Loaded(B)

    def test_conflicting_entries_are_unreadable_naming_their_volumes(
            self, md_env: MetadataEnv) -> None:
        ns = metadata_xml.NS
        md_env.seed(md_env.vm, (
            f'<ovirt-vm:vm xmlns:ovirt-vm="{ns}">'
            + f'<ovirt-vm:device devtype="disk" name="sdc" state="loading">{_pdiv(A)}'
              '</ovirt-vm:device>' * 3
            + "</ovirt-vm:vm>"))
        state = md_env.repo.read(md_env.vm, SDC)
        assert isinstance(state, Unreadable) and state.reason
        assert state.volumes == (A,)

    def test_an_unreadable_drive_does_not_stop_its_neighbour(
            self, md_env: MetadataEnv) -> None:
        ns = metadata_xml.NS
        md_env.seed(md_env.vm, (
            f'<ovirt-vm:vm xmlns:ovirt-vm="{ns}">'
            f'<ovirt-vm:device devtype="disk" name="sdc" state="busy">{_pdiv(A)}'
            "</ovirt-vm:device>"
            f'<ovirt-vm:device devtype="disk" name="sdd">{_pdiv(B)}</ovirt-vm:device>'
            "</ovirt-vm:vm>"))
        states = md_env.repo.read_all(md_env.vm, [SDC, SDD])
        assert isinstance(states[SDC], Unreadable) and states[SDD] == Loaded(B)
        # Writing the unreadable drive's settled state replaces its elements.
        md_env.repo.write(md_env.vm, SDC, Loaded(A))
        assert md_env.repo.read_all(md_env.vm, [SDC, SDD]) == {SDC: Loaded(A), SDD: Loaded(B)}

    def test_an_unreadable_state_cannot_be_written(self, md_env: MetadataEnv) -> None:
        md_env.repo.write(md_env.vm, SDC, Loaded(A))
        before = etree.tostring(md_env.block(md_env.vm))
        with pytest.raises(InvalidMetadata):
            md_env.repo.write(md_env.vm, SDC, Unreadable("nonsense", (A,)))
        assert etree.tostring(md_env.block(md_env.vm)) == before
        assert md_env.repo.read(md_env.vm, SDC) == Loaded(A)

    @pytest.mark.parametrize("call", ["read", "read_all", "write"])
    def test_unknown_vm_is_no_such_vm(self, md_env: MetadataEnv, call: str) -> None:
        vm, repo = vm_id("metadata-contract: no such VM"), md_env.repo
        calls: dict[str, Callable[[], object]] = {
            "read": lambda: repo.read(vm, SDC),
            "read_all": lambda: repo.read_all(vm, [SDC]),
            "write": lambda: repo.write(vm, SDC, EMPTY),
        }
        with pytest.raises(NoSuchVM):
            calls[call]()
