"""The in-memory host writes metadata lazily for speed; the block must come out exactly as
writing each change into it at once would have made it."""

from __future__ import annotations

import copy
import random

import pytest
from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.domain.model import CdEntry, DriveName, EntryState, VmId, VolumeRef

VM = VmId("00000000-0000-4000-8000-000000000001")
DRIVES = [DriveName("sdc"), DriveName("sdd"), DriveName("hdc")]
VOLUMES = [VolumeRef(*(f"0000000{k}-0000-4000-8000-00000000000{n}" for k in range(4)))
           for n in range(3)]
START = (f'<ovirt-vm:vm xmlns:ovirt-vm="{metadata_xml.NS}">\n  <ovirt-vm:a>1</ovirt-vm:a>\n'
         '  <ovirt-vm:device devtype="disk" name="sdd"/>\n  <ovirt-vm:b/>\n</ovirt-vm:vm>')


def entries(rng: random.Random) -> tuple[CdEntry, ...]:
    a, b = rng.sample(VOLUMES, 2)
    return rng.choice([
        (), (CdEntry(),), (CdEntry(None, a),), (CdEntry(EntryState.LOADING, a),),
        (CdEntry(EntryState.EJECTING, a), CdEntry(EntryState.LOADING, b)),
        (CdEntry(None, a), CdEntry(EntryState.EJECTING, b)),
    ])


@pytest.mark.parametrize("seed", range(40))
def test_lazy_writes_leave_the_block_eager_writes_would(seed: int) -> None:
    rng = random.Random(seed)
    host = MemoryHost()
    memory_vm = host.add_vm(VM, metadata=START)
    eager = copy.deepcopy(memory_vm.metadata)
    for _ in range(rng.randrange(1, 12)):
        drive = rng.choice(DRIVES)
        if rng.random() < 0.15:  # someone looks at (or edits) the block meanwhile
            assert etree.tostring(memory_vm.metadata) == etree.tostring(eager)
            continue
        encoding = rng.choice([metadata_xml.Encoding.DESIGN] * 3 + [metadata_xml.Encoding.VDSM_450])
        written = entries(rng)
        if encoding is metadata_xml.Encoding.VDSM_450 and not written:
            continue  # the nested encoding has no "no entry"
        memory_vm.write_entries(drive, written, encoding)
        metadata_xml.write_entries(eager, drive, written, encoding)
        for d in DRIVES:
            assert memory_vm.read_entries(d) == metadata_xml.read_entries(eager, d)
    assert etree.tostring(memory_vm.metadata) == etree.tostring(eager)
