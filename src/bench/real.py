"""A change on a real QEMU VM through the core, against the bare calls it needs.

Makes its own transient VM (TCG, q35, 64 MiB, no boot disk, one empty SATA CD-ROM) and two
ISO image files activated on loop devices, and removes them all at the end. The calls a
change makes (libvirt's, and the two storage activations) are recorded once per direction
through a recording connection; the bare sequence replays exactly those calls, with the
same arguments, directly on libvirt and the loop activator. Changes through the core and
bare sequences alternate, in both directions, in the same run.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt  # type: ignore[import-untyped, unused-ignore]
from lxml import etree
from ovirt_cdrom.adapters.libvirt.connection import LibvirtConnection
from ovirt_cdrom.adapters.libvirt.hypervisor import LibvirtHypervisor
from ovirt_cdrom.adapters.libvirt.metadata import LibvirtMetadataRepository
from ovirt_cdrom.adapters.loop import LoopVolumeActivator
from ovirt_cdrom.domain.model import DriveName, LoadVolume, Media, VmId, VolumeRef
from ovirt_cdrom.ports import VolumeActivator
from ovirt_cdrom.service import CdromService

URI = "qemu:///system"
_NS = "http://ovirt.org/vm/1.0"
_METADATA = (f'<ovirt-vm:vm xmlns:ovirt-vm="{_NS}">'
             "<ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>"
             '<ovirt-vm:device devtype="disk" name="sdc"/></ovirt-vm:vm>')
_Call = tuple[str, str, tuple[Any, ...], dict[str, Any]]


def _domain_xml(name: str, vm_uuid: str) -> str:
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "uuid").text = vm_uuid
    etree.SubElement(dom, "memory", unit="MiB").text = "64"
    etree.SubElement(dom, "vcpu").text = "1"
    etree.SubElement(dom, "metadata").append(etree.fromstring(_METADATA))
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type", arch="x86_64", machine="q35").text = "hvm"
    devices = etree.SubElement(dom, "devices")
    disk = etree.SubElement(devices, "disk", type="file", device="cdrom")
    etree.SubElement(disk, "driver", name="qemu")
    etree.SubElement(disk, "target", dev="sdc", bus="sata")
    etree.SubElement(disk, "readonly")
    etree.SubElement(devices, "memballoon", model="none")
    return etree.tostring(dom, encoding="unicode")


class _Recording:
    """A libvirt object whose method calls are appended to ``log``; domains it returns
    are recorded too."""

    def __init__(self, target: Any, where: str, log: list[_Call]) -> None:
        self._target, self._where, self._log = target, where, log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._log.append((self._where, name, args, kwargs))
            result = attr(*args, **kwargs)
            if isinstance(result, libvirt.virDomain):
                return _Recording(result, "domain", self._log)
            return result
        return call


class _RecordingVolumes(VolumeActivator):
    def __init__(self, inner: VolumeActivator, log: list[_Call]) -> None:
        self.inner, self.log = inner, log

    def prepare(self, volume: VolumeRef) -> Media:
        self.log.append(("volumes", "prepare", (volume,), {}))
        return self.inner.prepare(volume)

    def teardown(self, volume: VolumeRef) -> None:
        self.log.append(("volumes", "teardown", (volume,), {}))
        self.inner.teardown(volume)

    def is_active(self, volume: VolumeRef) -> bool:
        self.log.append(("volumes", "is_active", (volume,), {}))
        return self.inner.is_active(volume)

    def resolve_path(self, path: str) -> Media:
        self.log.append(("volumes", "resolve_path", (path,), {}))
        return self.inner.resolve_path(path)


def _replay(conn: Any, volumes: VolumeActivator, calls: list[_Call]) -> None:
    """Issue ``calls`` again, directly: the bare cost of a change."""
    dom: Any = None
    for where, name, args, kwargs in calls:
        if where == "connection":
            result = getattr(conn, name)(*args, **kwargs)
            if isinstance(result, libvirt.virDomain):
                dom = result
        elif where == "domain":
            getattr(dom, name)(*args, **kwargs)
        else:
            getattr(volumes, name)(*args, **kwargs)


def measure(changes: int, rounds: int,
            progress: Callable[[str], None] = lambda _msg: None,
            uri: str = URI) -> dict[str, Any]:
    """``libvirt_change_ms``, ``libvirt_bare_ms``, ``libvirt_overhead_ratio`` and details."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(uri)
    base = Path(tempfile.mkdtemp(prefix="ovirt-cdrom-bench-"))
    base.chmod(0o755)
    storage, run_root = base / "storage", base / "host"
    vm_uuid = str(uuid.uuid4())
    vm = VmId(vm_uuid)
    drive = DriveName("sdc")
    isos = [VolumeRef(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()),
                      str(uuid.uuid4())) for _ in range(2)]
    activator = LoopVolumeActivator(storage, run_root)
    dom = None
    try:
        for d in (storage, run_root):
            d.mkdir(mode=0o755)
        for volume in isos:
            image = activator.image_file(volume)
            image.parent.mkdir(parents=True, mode=0o755)
            image.write_bytes(f"ISO {volume}".encode().ljust(1024 * 1024, b"\0"))
        dom = conn.createXML(_domain_xml(f"ovirt-cdrom-bench-{vm_uuid[:8]}", vm_uuid), 0)

        def service_over(connection: LibvirtConnection, volumes: VolumeActivator) -> CdromService:
            return CdromService(LibvirtHypervisor(connection), volumes,
                                LibvirtMetadataRepository(connection))

        timed = service_over(LibvirtConnection(uri), activator)
        timed.change_cd(vm, drive, LoadVolume(isos[0]))
        # One change each way, recorded: what the bare sequence replays.
        recorded: list[list[_Call]] = []
        for target in (isos[1], isos[0]):
            log: list[_Call] = []

            def opener(u: str, log: list[_Call] = log) -> Any:
                return _Recording(libvirt.open(u), "connection", log)

            recorder = service_over(LibvirtConnection(uri, opener=opener),
                                    _RecordingVolumes(activator, log))
            if not recorder.change_cd(vm, drive, LoadVolume(target)).changed:
                raise AssertionError("the recorded change changed nothing")
            recorded.append(log)
        counts = Counter(f"{where}.{name}" for where, name, _a, _k in recorded[0])
        change_ms: list[float] = []
        bare_ms: list[float] = []
        ratios: list[float] = []
        for r in range(rounds):
            progress(f"libvirt round {r + 1}/{rounds}")
            round_change: list[float] = []
            round_bare: list[float] = []
            for i in range(changes):
                # Even: the core changes A->B, bare goes back; odd: bare first.
                steps: list[tuple[str, Callable[[], object]]] = [
                    ("core", lambda: timed.change_cd(vm, drive, LoadVolume(isos[1]))),
                    ("bare", lambda: _replay(conn, activator, recorded[1])),
                ] if i % 2 == 0 else [
                    ("bare", lambda: _replay(conn, activator, recorded[0])),
                    ("core", lambda: timed.change_cd(vm, drive, LoadVolume(isos[0]))),
                ]
                for kind, step in steps:
                    start = time.perf_counter()
                    step()
                    ms = (time.perf_counter() - start) * 1000
                    (round_change if kind == "core" else round_bare).append(ms)
            change_ms += round_change
            bare_ms += round_bare
            ratios.append(statistics.median(round_change) / statistics.median(round_bare))
        change = statistics.median(change_ms)
        bare = statistics.median(bare_ms)
        return {
            "libvirt_change_ms": change,
            "libvirt_bare_ms": bare,
            "libvirt_overhead_ratio": change / bare,
            "libvirt": {
                "changes_per_round": changes, "rounds": rounds,
                "change_ms": {"median": change, "min": min(change_ms), "max": max(change_ms)},
                "bare_ms": {"median": bare, "min": min(bare_ms), "max": max(bare_ms)},
                "ratio_per_round": ratios,
                "bare_calls": dict(sorted(counts.items())),
            },
        }
    finally:
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
        for volume in isos:
            with contextlib.suppress(Exception):  # cleanup must not hide the original error
                activator.teardown(volume)
        conn.close()
        shutil.rmtree(base, ignore_errors=True)
