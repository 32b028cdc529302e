"""``ovirt-cdrom demo``: the three flows of the design on an in-memory host."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.model import VmId, VolumeRef
from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

_VM = "6f4b1f2e-0c1d-4a8e-9b7a-3c2d1e0f9a8b"
_POOL = "13345997-b94f-42dd-b8ef-a1392f65cebf"
_SD = "88252cf6-381e-48f0-8795-a294a32c7149"
_ISOS = {
    "fedora.iso": VolumeRef(_POOL, _SD, "89f05c7d-b961-4935-993f-514499024515",
                            "626a493f-5214-4337-b580-96a1ce702c2a"),
    "debian.iso": VolumeRef(_POOL, _SD, "0b7c2f0e-3f7a-4b1e-8d8e-4a0a9c6f1d2e",
                            "5d2e9a41-7c3b-4f6a-9e1d-2b8c7a6f5e4d"),
}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common],
                       help="run insert, change and eject on an in-memory host")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    console = Console()
    app = build({"adapters": "memory"})
    host = app.memory.host()
    api = app.core.api()
    vm = VmId(_VM)
    host.add_vm(vm)
    drive = host.add_drive(vm, "sata", 2)
    for volume in _ISOS.values():
        host.add_volume(volume)

    def spec(name: str | None) -> dict[str, Any]:
        drive_spec = None if name is None else {"device": "cdrom", **_ISOS[name].as_dict()}
        return {"iface": "sata", "index": "2", "drive_spec": drive_spec}

    steps = [("insert fedora.iso into the empty tray", "fedora.iso"),
             ("change to debian.iso", "debian.iso"),
             ("eject", None)]
    for title, iso in steps:
        request = {"vmID": _VM, "driveSpec": spec(iso)}
        answer = api.changeCD(_VM, spec(iso))
        tray = host.drive(vm, drive).source
        active = [name for name, v in _ISOS.items() if host.volumes[v]]
        block = metadata_xml.serialize(host.vm(vm).metadata.element(), pretty=True)
        console.print(Panel(Group(
            Text("VM.changeCD " + json.dumps(request, indent=2), overflow="fold"),
            Text(f"vdsm answers: {json.dumps(answer)}", style="bold green"
                 if "vmList" in answer else "bold red"),
            Text(f"the VM's tray ({drive}) holds: {tray or '(nothing)'}", overflow="fold"),
            Text(f"active ISO volumes: {', '.join(active) or '(none)'}"),
            Text("the VM's metadata:", style="dim"),
            Syntax(block.rstrip(), "xml", word_wrap=True)), title=title, title_align="left"))
    return 0
