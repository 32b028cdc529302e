"""The in-memory host as the simulator's JSON shows it (``final``, and ``after`` a step).

The keys are a public contract (docs/simulator.md): ``vms`` {VMID: {``drives`` {NAME:
{``source``, ``metadata`` [{``state``, ``pdiv``}]}}, ``metadata_xml``}}, ``volumes`` [{PDIV,
``active``}]; the extra keys stand beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.domain.errors import CdromError, InvalidMetadata
from ovirt_cdrom.domain.model import VolumeRef
from ovirt_cdrom.domain.state import DriveState, Empty, Loaded, Unreadable


def entries_json(state: DriveState) -> list[dict[str, Any]]:
    """The drive's state as the design's logical entries: ``[{state, pdiv}]``."""
    return [{"state": label, "pdiv": volume.as_dict() if volume else None}
            for label, volume in metadata_xml.entries(state)]


def host_json(host: MemoryHost, labels: Mapping[VolumeRef, str] | None = None
              ) -> dict[str, Any]:
    """The host's VMs (each drive's tray and state, the metadata block as stored) and
    volumes; ``labels`` name the ISOs a scenario labelled (the extra key ``name``)."""
    vms: dict[str, Any] = {}
    with host.lock:
        for vm in host.vms.values():
            drives: dict[str, Any] = {}
            for name, drive in sorted(vm.drives.items()):
                entry: dict[str, Any] = {"source": drive.source}
                state: DriveState
                try:
                    state = vm.metadata.read(name)
                except CdromError as err:
                    state = Unreadable(err.reason)
                if isinstance(state, Unreadable):
                    entry["metadata"] = None
                    entry["metadata_error"] = InvalidMetadata(state.reason).message
                else:
                    entry["metadata"] = entries_json(state)
                entry["iface"], entry["index"] = drive.iface, drive.index
                drives[name.value] = entry
            vms[str(vm.id)] = {"drives": drives, "metadata_xml": vm.metadata.xml(),
                               "migrating": vm.migrating}
        volumes = []
        for v, active in host.volumes.items():
            item: dict[str, Any] = {**v.as_dict(), "active": active}
            if labels and v in labels:
                item["name"] = labels[v]
            volumes.append(item)
    return {"vms": vms, "volumes": volumes}


def markers(host: MemoryHost) -> list[str]:
    """The drives whose metadata holds a marker (a change recovery must finish)."""
    found = []
    with host.lock:
        for vm in host.vms.values():
            for name in sorted(vm.drives):
                try:
                    state = vm.metadata.read(name)
                except CdromError:
                    continue
                if not isinstance(state, Empty | Loaded):
                    found.append(f"{vm.id}/{name}")
    return found
