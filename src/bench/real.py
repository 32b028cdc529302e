"""A change on a real QEMU VM through the core, against the bare calls it needs.

Makes its own transient VM (KVM where QEMU may use it, else TCG; q35, 64 MiB, no boot disk,
one empty SATA CD-ROM) and two ISO image files activated on loop devices, and removes them
all at the end.

The **bare** change (:func:`bare_change`) is written out call by call: the fewest libvirt
calls a change from one CD to the other needs, issued directly on a libvirt connection, plus
the storage work any change needs (activating the new volume, deactivating the old one)
issued directly on the loop activator. Its arguments (the two metadata blocks, the drive's
``<disk>``, the flags) are the very ones the core sent in a change recorded once per
direction, so both sides write the same bytes. Each bare change is timed in parts: its
libvirt calls (``libvirt_only``) and its storage work (``storage``), which add up to it.
Changes through the core and bare changes alternate, in both directions, in the same run.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import stat
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import libvirt  # type: ignore[import-untyped, unused-ignore]
from lxml import etree
from ovirt_cdrom.adapters.libvirt.connection import LibvirtConnection
from ovirt_cdrom.adapters.libvirt.hypervisor import LibvirtHypervisor
from ovirt_cdrom.adapters.libvirt.metadata import LibvirtMetadataRepository
from ovirt_cdrom.adapters.loop import LoopVolumeActivator
from ovirt_cdrom.domain.model import DriveName, LoadVolume, Media, VmId, VolumeRef
from ovirt_cdrom.domain.state import Loaded
from ovirt_cdrom.ports import VolumeActivator
from ovirt_cdrom.service import CdromService

URI = "qemu:///system"
_NS = "http://ovirt.org/vm/1.0"
_METADATA = (f'<ovirt-vm:vm xmlns:ovirt-vm="{_NS}">'
             "<ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>"
             '<ovirt-vm:device devtype="disk" name="sdc"/></ovirt-vm:vm>')
_Call = tuple[str, str, tuple[Any, ...], dict[str, Any]]
T = TypeVar("T")


# The users libvirt runs QEMU as: Debian's, then Fedora's.
_QEMU_USERS = ("libvirt-qemu", "qemu")


def domain_type(kvm: str = "/dev/kvm") -> str:
    """``kvm`` where QEMU's user can open ``/dev/kvm``, else ``qemu`` (TCG, slower).

    Without udev ``/dev/kvm`` stays ``root:root 0600``: root can open it but QEMU, run as its
    own user, cannot, so asking libvirt for ``kvm`` there would fail.
    """
    try:
        st = os.stat(kvm)
    except OSError:
        return "qemu"
    if not stat.S_ISCHR(st.st_mode):
        return "qemu"
    if st.st_mode & 0o006 == 0o006:
        return "kvm"
    for name in _QEMU_USERS:
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        if user.pw_uid == st.st_uid and st.st_mode & 0o600 == 0o600:
            return "kvm"
        if st.st_gid in groups and st.st_mode & 0o060 == 0o060:
            return "kvm"
        return "qemu"
    return "kvm" if os.access(kvm, os.R_OK | os.W_OK) else "qemu"


def _domain_xml(name: str, vm_uuid: str) -> str:
    dom = etree.Element("domain", type=domain_type())
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


class _Timing:
    """A libvirt object that adds the time spent in its calls (and in those of the domains
    it returns) to ``spent[0]``."""

    def __init__(self, target: Any, spent: list[float]) -> None:
        self._target, self._spent = target, spent

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                result = attr(*args, **kwargs)
            finally:
                self._spent[0] += time.perf_counter() - start
            if isinstance(result, libvirt.virDomain):
                return _Timing(result, self._spent)
            return result
        return call


class _TimedVolumes(VolumeActivator):
    """The activator, adding the time spent in it to ``spent[0]``."""

    def __init__(self, inner: VolumeActivator, spent: list[float]) -> None:
        self.inner, self.spent = inner, spent

    def _timed(self, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.spent[0] += time.perf_counter() - start

    def prepare(self, volume: VolumeRef) -> Media:
        return self._timed(lambda: self.inner.prepare(volume))

    def teardown(self, volume: VolumeRef) -> None:
        self._timed(lambda: self.inner.teardown(volume))

    def is_active(self, volume: VolumeRef) -> bool:
        return self._timed(lambda: self.inner.is_active(volume))

    def resolve_path(self, path: str) -> Media:
        return self._timed(lambda: self.inner.resolve_path(path))


@dataclass(frozen=True, slots=True)
class BarePlan:
    """A change from ``old`` to ``new`` as :func:`bare_change` sends it."""

    vm_uuid: str
    old: VolumeRef
    new: VolumeRef
    pending_block: str      # write 1: both entries, the new one marked as loading
    final_block: str        # write 2: the new CD alone
    prefix: str             # the block's namespace prefix
    metadata_flags: int
    disk_xml: str           # the drive's <disk> holding the new volume
    device_flags: int


# The bare change, for the readable output and docs/performance.md.
BARE_CALLS = ("lookupByUUIDString", "jobStats", "XMLDesc", "metadata", "setMetadata",
              "prepare (new volume)", "updateDeviceFlags", "teardown (old volume)",
              "setMetadata")


def bare_change(conn: Any, activator: LoopVolumeActivator, plan: BarePlan) -> tuple[float, float]:
    """The fewest calls a change needs, issued directly; returns (libvirt s, storage s)."""
    clock = time.perf_counter
    t0 = clock()
    # The VM's handle, which every call below is made on.
    dom = conn.lookupByUUIDString(plan.vm_uuid)
    # A change must be refused while the VM migrates: one question about its job.
    dom.jobStats()
    # What the tray holds (the change must know it to be atomic) and the drive's <disk>.
    dom.XMLDesc(0)
    # What the metadata names: the current CD, or a change a crash left pending.
    dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, _NS, libvirt.VIR_DOMAIN_AFFECT_CURRENT)
    # Write 1, before anything changes: the new volume is loading (crash safety).
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, plan.pending_block, plan.prefix, _NS,
                    plan.metadata_flags)
    t1 = clock()
    # Storage: the new volume must be active before QEMU can open it.
    activator.prepare(plan.new)
    t2 = clock()
    # The media change itself (forced, as vdsm does).
    dom.updateDeviceFlags(plan.disk_xml, plan.device_flags)
    t3 = clock()
    # Storage: the old volume is torn down before the metadata stops naming it.
    activator.teardown(plan.old)
    t4 = clock()
    # Write 2: the new CD alone.
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, plan.final_block, plan.prefix, _NS,
                    plan.metadata_flags)
    t5 = clock()
    return (t1 - t0) + (t3 - t2) + (t5 - t4), (t2 - t1) + (t4 - t3)


def _plan(vm_uuid: str, old: VolumeRef, new: VolumeRef, log: list[_Call]) -> BarePlan:
    """The bare change's arguments, taken from a recorded change of the core."""
    writes = [args for where, name, args, _kw in log if name == "setMetadata"]
    updates = [args for where, name, args, _kw in log if name == "updateDeviceFlags"]
    if len(writes) != 2 or len(updates) != 1:
        raise AssertionError(f"a change made {len(writes)} metadata writes and {len(updates)} "
                             "media updates; the bare change assumes 2 and 1")
    if writes[0][2:] != writes[1][2:]:
        raise AssertionError("the two metadata writes went with different flags")
    return BarePlan(vm_uuid, old, new, writes[0][1], writes[1][1], writes[0][2], writes[0][4],
                    updates[0][0], updates[0][1])


def _split_changes(uri: str, vm: VmId, drive: DriveName, isos: list[VolumeRef],
                   activator: LoopVolumeActivator, *, changes: int) -> dict[str, float]:
    """Changes through the core with every libvirt and storage call timed: the medians of
    the time in libvirt calls, in storage calls and in the core itself (the rest). Run
    after the timed rounds, apart from them (the timing wrappers cost a little)."""
    in_libvirt, in_storage = [0.0], [0.0]
    connection = LibvirtConnection(uri, opener=lambda u: _Timing(libvirt.open(u), in_libvirt))
    service = CdromService(LibvirtHypervisor(connection), _TimedVolumes(activator, in_storage),
                           LibvirtMetadataRepository(connection))
    service.change_cd(vm, drive, LoadVolume(isos[1]))  # looks the VM up: not timed
    split: dict[str, list[float]] = {"total": [], "libvirt": [], "storage": [], "core": []}
    for i in range(changes):
        in_libvirt[0] = in_storage[0] = 0.0
        start = time.perf_counter()
        if not service.change_cd(vm, drive, LoadVolume(isos[i % 2])).changed:
            raise AssertionError("a change of the split run changed nothing")
        total = time.perf_counter() - start
        for key, value in (("total", total), ("libvirt", in_libvirt[0]),
                           ("storage", in_storage[0]),
                           ("core", total - in_libvirt[0] - in_storage[0])):
            split[key].append(value * 1000)
    service.change_cd(vm, drive, LoadVolume(isos[0]))  # back where the rounds left it
    connection.close()
    return {key: statistics.median(values) for key, values in split.items()}


def _spread(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def measure(changes: int, rounds: int,
            progress: Callable[[str], None] = lambda _msg: None,
            uri: str = URI) -> dict[str, Any]:
    """``libvirt_change_ms``, ``libvirt_bare_ms``, ``libvirt_overhead_ratio``, and the bare
    change's split into ``libvirt_only_ms`` and ``storage_ms``, with details."""
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

        def service_over(connection: LibvirtConnection) -> CdromService:
            return CdromService(LibvirtHypervisor(connection), activator,
                                LibvirtMetadataRepository(connection))

        timed_connection = LibvirtConnection(uri)
        timed = service_over(timed_connection)
        metadata = LibvirtMetadataRepository(timed_connection)
        timed.change_cd(vm, drive, LoadVolume(isos[0]))
        # Changes recorded through a connection that logs every call: A->B, B->A, A->B.
        # The bare plans take their arguments from the last two; the last one (on a
        # connection that already knows the VM, as the timed one does) gives the core's
        # calls per change.
        log: list[_Call] = []
        recorder = service_over(LibvirtConnection(
            uri, opener=lambda u: _Recording(libvirt.open(u), "connection", log)))
        logs: list[list[_Call]] = []
        for target in (isos[1], isos[0], isos[1]):
            del log[:]
            if not recorder.change_cd(vm, drive, LoadVolume(target)).changed:
                raise AssertionError("the recorded change changed nothing")
            logs.append(list(log))
        timed.change_cd(vm, drive, LoadVolume(isos[0]))
        to_b = _plan(vm_uuid, isos[0], isos[1], logs[2])
        to_a = _plan(vm_uuid, isos[1], isos[0], logs[1])
        change_calls = Counter(name for _where, name, _a, _k in logs[2])

        change_ms: list[float] = []
        bare_ms: list[float] = []
        libvirt_ms: list[float] = []
        storage_ms: list[float] = []
        ratios: list[float] = []

        def core(target: VolumeRef) -> None:
            if not timed.change_cd(vm, drive, LoadVolume(target)).changed:
                raise AssertionError(f"the core's change to {target} changed nothing")

        for r in range(rounds):
            progress(f"libvirt round {r + 1}/{rounds}")
            round_change: list[float] = []
            round_bare: list[float] = []
            for i in range(changes):
                # Even: the core changes A->B, bare goes back; odd: bare first.
                first_core = i % 2 == 0
                for kind in ("core", "bare") if first_core else ("bare", "core"):
                    start = time.perf_counter()
                    if kind == "core":
                        core(isos[1] if first_core else isos[0])
                        round_change.append((time.perf_counter() - start) * 1000)
                    else:
                        lv, st = bare_change(conn, activator, to_a if first_core else to_b)
                        round_bare.append((time.perf_counter() - start) * 1000)
                        libvirt_ms.append(lv * 1000)
                        storage_ms.append(st * 1000)
            # The bare changes really changed the CD: the VM holds A, the metadata says so.
            if metadata.read(vm, drive) != Loaded(isos[0]) \
                    or not activator.is_active(isos[0]) or activator.is_active(isos[1]):
                raise AssertionError("the bare changes did not leave the VM as a change would")
            change_ms += round_change
            bare_ms += round_bare
            ratios.append(statistics.median(round_change) / statistics.median(round_bare))
        progress("libvirt: where a change's time goes")
        split = _split_changes(uri, vm, drive, isos, activator, changes=changes)
        change = statistics.median(change_ms)
        bare = statistics.median(bare_ms)
        return {
            "libvirt_change_ms": change,
            "libvirt_bare_ms": bare,
            "libvirt_overhead_ratio": change / bare,
            "libvirt_only_ms": statistics.median(libvirt_ms),
            "storage_ms": statistics.median(storage_ms),
            "libvirt": {
                "changes_per_round": changes, "rounds": rounds,
                "domain_type": domain_type(),  # kvm, or qemu (TCG) where KVM is unusable
                "change_ms": _spread(change_ms),
                "bare_ms": _spread(bare_ms),
                "libvirt_only_ms": _spread(libvirt_ms),
                "storage_ms": _spread(storage_ms),
                "ratio_per_round": ratios,
                "bare_calls": list(BARE_CALLS),
                "change_calls": dict(sorted(change_calls.items())),
                "change_split_ms": split,
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
