"""ISO volumes as image files on loop devices, for hosts without device-mapper.

Each volume is an image file ``<storage_root>/<sd>/<img>/<vol>``. Preparing it attaches the
file to a read-only loop device (reusing an attachment that exists) and exposes the device
at vdsm's block layout under ``root`` (see :mod:`ovirt_cdrom.adapters.blocklinks`: the same
rules, owner and modes as the LVM activator, vdsm's image directory included), so a real
QEMU opens a real block device at the path it would get from LVM. A prepare whose links
cannot be made detaches the device again if it attached it.

All state lives in the kernel: whether a volume is active is whether its file is attached
(``losetup -j``), so a fresh process after a crash sees what the dead one left. The kernel
does not refuse to detach a loop device that is open (``losetup -d`` only marks it to be
cleared on last close), so teardown looks for holders itself, as LVM's "in use" would:
processes with the device open (``/proc/*/fd``), mounts of it, and stacked devices. Tools
that scan block devices (``losetup``, ``blkid``, udev's probes) open them for a moment; a
holder is believed only if it is still there after :data:`HOLDER_RECHECKS`, so that such a
passer-by does not make teardown give up (the core would then leave the volume active).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path

from ovirt_cdrom.adapters.blocklinks import BlockLinks, Ownership, resolve_legacy_path
from ovirt_cdrom.adapters.runner import CommandError, CommandRunner, SubprocessRunner
from ovirt_cdrom.domain.errors import StorageError, VolumeInUse, VolumeNotFound
from ovirt_cdrom.domain.model import Media, VolumeRef
from ovirt_cdrom.ports import VolumeActivator

log = logging.getLogger(__name__)

_ASSOCIATED_RE = re.compile(r"^(/dev/loop\d+):")
_DEVICE_RE = re.compile(r"^/dev/loop\d+$")
# Seconds to wait before looking at a device's holders again, while it has some.
HOLDER_RECHECKS = (0.02, 0.05, 0.1)


class LoopVolumeActivator(VolumeActivator):
    def __init__(self, storage_root: Path, root: Path,
                 runner: CommandRunner | None = None, *, losetup: str = "losetup",
                 proc: Path = Path("/proc"), sys_block: Path = Path("/sys/block"),
                 owner: Ownership | None = None) -> None:
        self.storage_root = Path(storage_root)
        self.root = Path(root)
        self.runner = runner if runner is not None else SubprocessRunner(timeout=60.0)
        self.losetup = losetup
        self.proc = Path(proc)
        self.sys_block = Path(sys_block)
        self.links = BlockLinks(self.root, owner)
        # Serialises attach/detach within this process (two prepares of one volume must
        # not attach it twice).
        self._lock = threading.Lock()

    def image_file(self, volume: VolumeRef) -> Path:
        return self.storage_root / volume.domain_id / volume.image_id / volume.volume_id

    # --- VolumeActivator -------------------------------------------------------------

    def prepare(self, volume: VolumeRef) -> Media:
        with self._lock:
            image = self._existing_image(volume)
            attached = self.attached(image)
            device = attached[0] if attached else self._attach(image)
            try:
                media = self.links.create(volume, device)
            except StorageError:
                if not attached:  # ours: detach it again (the original error wins)
                    try:
                        self._losetup("--detach", device)
                    except StorageError:
                        log.exception("could not detach %s after its links failed", device)
                raise
        log.info("prepared volume %s on %s at %s", volume, device, media.path)
        return media

    def teardown(self, volume: VolumeRef) -> None:
        with self._lock:
            image = self._existing_image(volume)
            devices = self.attached(image)
            for device in devices:
                holders = self._lasting_holders(device)
                if holders:
                    raise VolumeInUse(f"{device} of volume {volume} in use by "
                                      f"{', '.join(holders)}")
            for device in devices:
                self._losetup("--detach", device)
            self.links.remove(volume)
        log.info("tore down volume %s (%s)", volume, ", ".join(devices) or "not attached")

    def is_active(self, volume: VolumeRef) -> bool:
        image = self.image_file(volume)
        return image.is_file() and bool(self.attached(image))

    def resolve_path(self, path: str) -> Media:
        return resolve_legacy_path(path)

    # --- the kernel's view -----------------------------------------------------------

    def attached(self, image: Path) -> list[str]:
        """The loop devices the file is attached to, from ``losetup -j``."""
        out = self._losetup("--associated", str(image))
        devices = []
        for line in out.splitlines():
            m = _ASSOCIATED_RE.match(line.strip())
            if m:
                devices.append(m.group(1))
        return devices

    def holders(self, device: str) -> list[str]:
        """Who holds ``device``: ``pid <n> (<comm>)``, ``mount <point>``, ``holder <dev>``."""
        if not _DEVICE_RE.match(device):
            raise ValueError(f"not a loop device: {device!r}")
        found = [f"pid {pid} ({_comm(self.proc / pid)})" for pid in self._opened_by(device)]
        found += [f"mount {m}" for m in self._mounts_of(device)]
        name = device.rsplit("/", 1)[1]
        with contextlib.suppress(OSError):
            found += [f"holder {h.name}" for h in (self.sys_block / name / "holders").iterdir()]
        return found

    def _lasting_holders(self, device: str) -> list[str]:
        holders = self.holders(device)
        for delay in HOLDER_RECHECKS:
            if not holders:
                break
            log.debug("%s held by %s; looking again in %.2f s", device, holders, delay)
            time.sleep(delay)
            holders = self.holders(device)
        return holders

    def _opened_by(self, device: str) -> list[str]:
        # Plain strings and os calls: this reads every descriptor of every process.
        proc = str(self.proc)
        pids = []
        for pid in os.listdir(proc):
            if not pid.isdigit():
                continue
            fd_dir = f"{proc}/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:  # gone, or not ours to look at
                continue
            for fd in fds:
                try:
                    if os.readlink(f"{fd_dir}/{fd}") == device:
                        pids.append(pid)
                        break
                except OSError:
                    continue
        return pids

    def _mounts_of(self, device: str) -> list[str]:
        try:
            rdev = os.stat(device).st_rdev
        except OSError:
            return []
        dev = f"{os.major(rdev)}:{os.minor(rdev)}"
        try:
            lines = (self.proc / "self" / "mountinfo").read_text().splitlines()
        except OSError:
            return []
        return [f[4] for f in (line.split() for line in lines) if len(f) > 4 and f[2] == dev]

    # --- helpers ---------------------------------------------------------------------

    def _existing_image(self, volume: VolumeRef) -> Path:
        image = self.image_file(volume)
        if not image.is_file():
            raise VolumeNotFound(f"{volume}: no image file {image}")
        return image

    def _attach(self, image: Path) -> str:
        device = self._losetup("--find", "--show", "--read-only", str(image)).strip()
        if not _DEVICE_RE.match(device):
            raise StorageError(f"losetup attached {image} to an unexpected device {device!r}")
        log.debug("attached %s to %s", image, device)
        return device

    def _losetup(self, *args: str) -> str:
        argv = [self.losetup, *args]
        try:
            result = self.runner.run(argv)
        except CommandError as e:
            raise StorageError(str(e)) from e
        if not result.ok:
            raise StorageError(f"{' '.join(argv)} failed (rc={result.returncode}): "
                               f"{'; '.join(result.stderr_lines)}")
        return result.stdout


def _comm(pid_dir: Path) -> str:
    try:
        return (pid_dir / "comm").read_text().strip()
    except OSError:
        return "?"
