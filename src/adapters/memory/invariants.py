"""The product's promises, checked against an in-memory host.

Used by the simulator (its report says whether the host ended consistent) and by the
exhaustive and property-based tests. Each violation is one readable sentence.
"""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory.host import MemoryHost
from ovirt_cdrom.domain.errors import CdromError
from ovirt_cdrom.domain.model import EMPTY_ENTRY, CdEntry, Unreadable, VmId


def unrelated_fingerprint(host: MemoryHost, vm: VmId) -> str:
    """Canonical XML of every metadata node that is not one of the VM's CD-ROM entries.

    Whitespace between elements is ignored: it carries no meaning in vdsm's metadata.
    """
    with host.lock:
        memory_vm = host.vm(vm)
        block = etree.fromstring(etree.tostring(memory_vm.metadata))
        cd_names = {d.value for d in memory_vm.drives}
    for el in list(block.iterchildren(f"{{{metadata_xml.NS}}}device")):
        if el.get("name") in cd_names and el.get("devtype", "disk") == "disk":
            block.remove(el)
    for el in block.iter():
        if el.tail is not None and not el.tail.strip():
            el.tail = None
        if len(el) and el.text is not None and not el.text.strip():
            el.text = None
    return etree.tostring(block, method="c14n").decode()


def fingerprints(host: MemoryHost) -> dict[VmId, str]:
    with host.lock:
        return {vm: unrelated_fingerprint(host, vm) for vm in host.vms}


def violations(host: MemoryHost, baseline: Mapping[VmId, str] | None = None,
               settled: bool = True) -> list[str]:
    """What breaks the promises now.

    ``settled``: the host is expected at rest after a recovery (no marker may remain).
    With ``settled=False`` only what must hold at every instant is checked (a VM never
    holds an inactive volume; unrelated metadata is unchanged).
    """
    found: list[str] = []
    with host.lock:
        held_volumes = set()
        for vm in host.vms.values():
            for name, drive in vm.drives.items():
                where = f"VM {vm.id} drive {name}"
                volume = host.volume_at(drive.source)
                if volume is not None:
                    held_volumes.add(volume)
                    if not host.volumes[volume]:
                        found.append(f"{where} holds inactive volume {volume}")
                if not settled:
                    continue
                try:
                    entries = metadata_xml.read_entries(vm.metadata, name)
                except CdromError as err:
                    entries = Unreadable(str(err))
                if isinstance(entries, Unreadable):
                    found.append(f"{where}: unreadable metadata: {entries.reason}")
                    continue
                if any(e.state is not None for e in entries):
                    found.append(f"{where}: a state marker remains: {_show(entries)}")
                    continue
                expected = (CdEntry(None, volume),) if volume is not None else (EMPTY_ENTRY,)
                if entries != expected and not (volume is None and entries == ()):
                    found.append(f"{where} holds {drive.source or 'nothing'} but metadata "
                                 f"says {_show(entries)}")
        if settled:
            for volume, active in host.volumes.items():
                if active and volume not in held_volumes:
                    found.append(f"volume {volume} is active but no VM holds it")
        if baseline is not None:
            for vm_id, before in baseline.items():
                if vm_id in host.vms and unrelated_fingerprint(host, vm_id) != before:
                    found.append(f"VM {vm_id}: metadata outside the CD-ROM entries changed")
    return found


def _show(entries: tuple[CdEntry, ...]) -> str:
    if not entries:
        return "(no entry)"
    return ", ".join(f"{e.state.value if e.state else 'none'}:{e.volume or 'empty'}"
                     for e in entries)
