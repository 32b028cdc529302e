"""Helpers for tests on real block devices: a loop sandbox that cleans up after itself."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from needs import unavailable
from ovirt_cdrom.adapters.loop import LoopVolumeActivator
from ovirt_cdrom.adapters.lvm import LvmVolumeActivator
from ovirt_cdrom.domain.errors import VolumeNotFound
from ovirt_cdrom.domain.model import VolumeRef

ISO_SIZE = 1024 * 1024


def require_root() -> None:
    """Skip the test (fail it under CI=true) unless it can create loop devices."""
    if os.geteuid() != 0:
        unavailable("creating loop devices needs root")
    if shutil.which("losetup") is None:
        unavailable("losetup is not installed")
    if not Path("/dev/loop-control").exists():
        unavailable("no /dev/loop-control: the kernel has no loop devices")


def device_mapper_unavailable() -> str | None:
    """Why LVM cannot activate volumes here, or None when device-mapper works."""
    try:
        fd = os.open("/dev/mapper/control", os.O_RDWR)
    except OSError as e:
        return f"device-mapper unavailable: /dev/mapper/control: {e.strerror}"
    os.close(fd)
    return None


def new_volume() -> VolumeRef:
    return VolumeRef(*(str(uuid.uuid4()) for _ in range(4)))


def loops_backed_under(base: Path) -> dict[str, str]:
    """Loop devices whose backing file lies under ``base`` (from sysfs): device -> file."""
    found = {}
    prefix = str(base.resolve()) + "/"
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            path = backing.read_text().strip()
        except OSError:
            continue
        if path.startswith(prefix):
            found["/dev/" + backing.parent.parent.name] = path
    return found


class Holder:
    """A child process holding a device open read-only, as QEMU holds a CD."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.proc = subprocess.Popen(
            [sys.executable, "-c",
             "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
             "print('ready', flush=True); sys.stdin.read()", device],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.release()
            raise RuntimeError(f"holder could not open {device}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class LoopSandbox:
    """Image files under ``base/storage``, links under ``base/host``; cleaned up on exit."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.storage_root = base / "storage"
        self.root = base / "host"
        self.storage_root.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self.holders: list[Holder] = []

    def activator(self) -> LoopVolumeActivator:
        return LoopVolumeActivator(self.storage_root, self.root)

    def add_volume(self, volume: VolumeRef, content: bytes = b"") -> Path:
        image = self.storage_root / volume.domain_id / volume.image_id / volume.volume_id
        image.parent.mkdir(parents=True, exist_ok=True)
        data = (content or f"ISO {volume}".encode()).ljust(ISO_SIZE, b"\0")
        image.write_bytes(data)
        return image

    def add_file(self, name: str = "legacy.iso") -> str:
        path = self.base / name
        path.write_bytes(b"\0" * 4096)
        return str(path)

    @contextlib.contextmanager
    def hold(self, device: str) -> Iterator[Holder]:
        holder = Holder(device)
        self.holders.append(holder)
        try:
            yield holder
        finally:
            holder.release()

    def attached(self) -> list[str]:
        return list(loops_backed_under(self.storage_root))

    def cleanup(self) -> None:
        for holder in self.holders:
            holder.release()
        for device in loops_backed_under(self.base):
            subprocess.run(["losetup", "--detach", device], check=False, capture_output=True)


@contextlib.contextmanager
def loop_sandbox(base: Path) -> Iterator[LoopSandbox]:
    require_root()
    sandbox = LoopSandbox(base)
    try:
        yield sandbox
    except BaseException:
        sandbox.cleanup()
        raise
    sandbox.cleanup()
    left = loops_backed_under(base)
    assert not left, f"loop devices left attached: {left}"


# --- LVM on loop devices, metadata only (no device-mapper needed) --------------------

MiB = 1024 * 1024


def require_lvm() -> None:
    require_root()
    if shutil.which("lvm") is None:
        unavailable("lvm2 is not installed")


def attach_loop(stack: contextlib.ExitStack, backing: Path, size: int = 64 * MiB) -> str:
    """A loop device over a new sparse file, detached when ``stack`` closes."""
    with backing.open("wb") as f:
        f.truncate(size)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
    stack.callback(subprocess.run, ["losetup", "--detach", device], check=False)
    return device


def lvm_on(devices: list[str], *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``lvm`` seeing only ``devices``, writing no backups or archives: what the SPM
    (another host) does to the domain, independent of this host's LVM configuration."""
    conf = "backup { backup=0 archive=0 } devices { hints=\"none\" write_cache_state=0 }"
    argv = ["lvm", args[0], "--devices", ",".join(devices), "--config", conf, *args[1:]]
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            env={**os.environ, "LC_ALL": "C", **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


class LvmDomain:
    """A block storage domain on loop devices: VG ``sd`` and its ISO volumes, made as the
    SPM makes them (metadata only), and removed with its PVs when ``stack`` closes."""

    POOL = "00000000-0000-0000-0000-000000000000"

    def __init__(self, stack: contextlib.ExitStack, pvs: list[str]) -> None:
        self.sd = str(uuid.uuid4())
        self.pvs = list(pvs)
        self.created = False
        stack.callback(self._remove)
        for pv in pvs:
            lvm_on([pv], "pvcreate", "--yes", pv)
        lvm_on(self.pvs, "vgcreate", self.sd, *pvs)
        self.created = True

    def extend(self, pv: str) -> None:
        """The domain grows onto another LUN (vdsm's extendStorageDomain on the SPM)."""
        self.pvs.append(pv)
        lvm_on(self.pvs, "pvcreate", "--yes", pv)
        lvm_on(self.pvs, "vgextend", self.sd, pv)

    def add_volume(self, *on_pvs: str, size: int = 4 * MiB) -> VolumeRef:
        """An inactive LV tagged ``IU_<image>`` as vdsm tags an image's volume."""
        volume = VolumeRef(self.POOL, self.sd, str(uuid.uuid4()), str(uuid.uuid4()))
        lvm_on(self.pvs, "lvcreate", "--driverloaded", "n", "--activate", "n", "--zero", "n",
               "--size", f"{size}b", "--name", volume.volume_id,
               "--addtag", f"IU_{volume.image_id}", "--addtag", f"PU_{self.POOL}",
               self.sd, *on_pvs)
        return volume

    def _remove(self) -> None:
        try:
            if self.created:
                lvm_on(self.pvs, "vgremove", "--driverloaded", "n", "--force", self.sd)
        finally:
            for pv in self.pvs:
                subprocess.run(["lvm", "pvremove", "--devices", pv, "--yes", pv],
                               capture_output=True, check=False)


def lvm_listing(activator: LvmVolumeActivator, vg: str) -> dict[str, tuple[str, ...]]:
    """What LVM lists of ``vg`` through the activator's own device selection (its learned
    devices, its retry): each LV's name and tags."""
    result = activator.run("lvs", "--noheadings", "--separator", "|", "-o", "lv_name,lv_tags",
                           vg, vg=vg)
    if not result.ok:
        raise VolumeNotFound(result.stderr.strip())
    found = {}
    for line in result.stdout.splitlines():
        if line.strip():
            name, tags = line.strip().split("|")
            found[name] = tuple(t for t in tags.split(",") if t)
    return found
