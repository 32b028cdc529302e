#!/usr/bin/env python3
"""Median time of a CD change on a real QEMU VM next to the bare libvirt calls it needs.

Run as root with libvirtd running. Makes one transient VM and two loop-backed ISO volumes
under a scratch folder, then alternates, ``--rounds`` times:

* a change through the product (libvirt + loop profile, vdsm's ``changeCD``): A -> B;
* the bare libvirt calls a change needs, on the same VM: read the live XML, read the
  metadata, ``setMetadata``, ``updateDeviceFlags`` (forced), ``setMetadata`` again;

each followed by a change back (not timed). Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "libvirt"))
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.libvirt.hypervisor import media_disk_xml
from ovirt_cdrom.adapters.libvirt.metadata import from_libvirt, to_libvirt
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.model import (
    CdEntry,
    DriveName,
    EntryState,
    Media,
    VolumeRef,
)
from realvm import UNRELATED_METADATA, RealHost, loop_config

NS = metadata_xml.NS
SDC = DriveName("sdc")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--uri", default="qemu:///system")
    args = parser.parse_args()
    real = RealHost(args.uri)
    try:
        return measure(real, args.rounds)
    finally:
        real.cleanup()


def measure(real: RealHost, rounds: int) -> int:
    a, b = (VolumeRef(*(str(uuid.uuid4()) for _ in range(4))) for _ in range(2))
    for v in (a, b):
        real.add_volume(v)
    vm = real.create_vm(metadata=UNRELATED_METADATA)
    api = build(loop_config(real)).core.api()
    volumes = build(loop_config(real)).core.volumes()

    def change(volume: VolumeRef) -> None:
        spec = {"iface": "sata", "index": "2", "drive_spec": volume.as_dict()}
        assert api.changeCD(vm.value, spec) == {"vmList": {}}

    change(a)
    dom = real.conn.lookupByUUIDString(vm.value)
    live = libvirt.VIR_DOMAIN_AFFECT_LIVE
    meta = libvirt.VIR_DOMAIN_METADATA_ELEMENT

    media: dict[VolumeRef, Media] = {}

    def bare(new: VolumeRef, old: VolumeRef) -> None:
        from ovirt_cdrom.adapters.libvirt.hypervisor import (  # noqa: PLC0415
            cdrom_elements,
            parse_domain_xml,
        )
        disk = cdrom_elements(parse_domain_xml(dom.XMLDesc(0)))[SDC]
        block = from_libvirt(dom.metadata(meta, NS, live))
        metadata_xml.write_entries(block, SDC, (CdEntry(EntryState.EJECTING, old),
                                                CdEntry(EntryState.LOADING, new)))
        dom.setMetadata(meta, to_libvirt(block), "ovirt-vm", NS, live)
        dom.updateDeviceFlags(media_disk_xml(disk, media[new]),
                              live | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE)
        metadata_xml.write_entries(block, SDC, (CdEntry(None, new),))
        dom.setMetadata(meta, to_libvirt(block), "ovirt-vm", NS, live)

    product, raw = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        change(b)
        product.append(time.perf_counter() - t)
        change(a)
        media = {v: volumes.prepare(v) for v in (a, b)}  # untimed: the product tears b down
        t = time.perf_counter()
        bare(b, a)
        raw.append(time.perf_counter() - t)
        bare(a, b)
    change(a)
    mp, mr = statistics.median(product), statistics.median(raw)
    print(f"rounds: {rounds} (interleaved)")
    print(f"change through the product: median {mp * 1000:.1f} ms")
    print(f"bare libvirt calls (XMLDesc, metadata, 2x setMetadata, updateDeviceFlags): "
          f"median {mr * 1000:.1f} ms")
    print(f"overhead: {(mp - mr) * 1000:.1f} ms ({mp / mr:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
