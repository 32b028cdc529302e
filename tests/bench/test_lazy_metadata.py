"""The in-memory host keeps each VM's written drive states and renders its metadata block only
when someone looks, for speed (``MemoryMetadata``); the block must come out exactly as
writing each state into it at once would have made it."""

from __future__ import annotations

import copy
import random

import pytest
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.domain.model import DriveName
from ovirt_cdrom.domain.state import (
    EMPTY,
    Changing,
    DriveState,
    Ejecting,
    Inserting,
    Loaded,
    Switched,
)
from rig import vm_id, volume

VM = vm_id("lazy-metadata")
DRIVES = [DriveName("sdc"), DriveName("sdd"), DriveName("hdc")]
VOLUMES = [volume(("lazy-metadata", n)) for n in range(3)]
START = (f'<ovirt-vm:vm xmlns:ovirt-vm="{metadata_xml.NS}">\n  <ovirt-vm:a>1</ovirt-vm:a>\n'
         '  <ovirt-vm:device devtype="disk" name="sdd"/>\n  <ovirt-vm:b/>\n</ovirt-vm:vm>')


def state(rng: random.Random) -> DriveState:
    a, b = rng.sample(VOLUMES, 2)
    states: list[DriveState] = [EMPTY, Loaded(a), Inserting(a), Ejecting(a), Ejecting(None),
                                Changing(a, b), Switched(a, b)]
    return rng.choice(states)


@pytest.mark.parametrize("seed", range(40))
def test_lazy_writes_leave_the_block_eager_writes_would(seed: int) -> None:
    rng = random.Random(seed)
    host = MemoryHost()
    memory_vm = host.add_vm(VM, metadata=START)
    eager = copy.deepcopy(memory_vm.metadata.element())
    for _ in range(rng.randrange(1, 12)):
        drive = rng.choice(DRIVES)
        if rng.random() < 0.15:  # someone looks at the block meanwhile
            assert memory_vm.metadata.xml() == metadata_xml.serialize(eager)
            continue
        encoding = rng.choice([metadata_xml.Encoding.DESIGN] * 3 + [metadata_xml.Encoding.VDSM_450])
        written = state(rng)
        memory_vm.metadata.write(drive, written, encoding)
        metadata_xml.write(eager, drive, written, encoding)
        for d in DRIVES:
            assert memory_vm.metadata.read(d) == metadata_xml.read(eager, d)
    assert memory_vm.metadata.xml() == metadata_xml.serialize(eager)
    assert metadata_xml.canonical(memory_vm.metadata.element()) == metadata_xml.canonical(eager)
