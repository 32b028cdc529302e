"""ISO volumes on an oVirt block storage domain, activated with LVM as vdsm does.

A block storage domain is a volume group named by the domain UUID; a volume is a logical
volume named by the volume UUID, tagged ``IU_<image UUID>``. Activation is
``lvchange --autobackup n --available y VG/LV`` (``--refresh`` for an LV already active),
deactivation ``--available n``. LVM refuses to deactivate an LV that is open, printing
``Logical volume VG/LV in use.``; that is reported as :class:`VolumeInUse`, and the
volume's links stay in place for the VM still using it.

Which devices LVM looks at is chosen per command, as vdsm 4.50 does, and never left to the
host: an oVirt host's devices file (``/etc/lvm/devices/system.devices``, written by
``vdsm-tool config-lvm-filter``) or ``lvm.conf`` filter lists the host's own disks only and
hides every storage domain. Each command is ``lvm <command> --devices <PVs> --config
'<conf>' ...``: ``--devices`` (vdsm's default ``config_method=devices``) overrides the
devices file, and ``conf`` carries vdsm's settings plus a filter accepting the same devices
(vdsm's ``config_method=filter``), so the host's filter does not apply either. The devices
are the domain's physical volumes, learned once per domain with ``vgs -o pv_name`` over the
*search devices* (the host's multipath devices, vdsm's default, plus configured ones). A
command that fails on the domain's devices (a stale list: the domain grew onto a new LUN)
runs once more on the search devices, as vdsm retries with a refreshed device list; only
"in use", which proves LVM saw the LV, is not retried.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ovirt_cdrom.adapters.blocklinks import BlockLinks, Ownership, resolve_legacy_path
from ovirt_cdrom.adapters.runner import (
    CommandError,
    CommandRunner,
    CompletedCommand,
    SubprocessRunner,
)
from ovirt_cdrom.domain.errors import StorageError, VolumeInUse, VolumeNotFound
from ovirt_cdrom.domain.model import Media, VolumeRef
from ovirt_cdrom.ports import VolumeActivator

log = logging.getLogger(__name__)

_IN_USE_RE = re.compile(r"^\s*Logical volume \S+ in use\.?$")
_NOT_FOUND_RES = (
    re.compile(r"Failed to find logical volume"),
    re.compile(r"Volume group \"[^\"]*\" not found"),
    re.compile(r"One or more specified logical volume\(s\) not found"),
)
# Device paths go into ``--devices`` (comma-separated) and into an LVM regex between '|'
# delimiters and double quotes: allow only characters that are literal there (plus '.',
# harmless as "any character").
_DEVICE_RE = re.compile(r"^/dev/[A-Za-z0-9_.:/-]+$")
_SEPARATOR = "|"
# vdsm's LVM_FLAGS for its reporting commands.
_REPORT_FLAGS = ("--noheadings", "--units", "b", "--nosuffix", "--separator", _SEPARATOR,
                 "--ignoreskippedcluster")
# What vgs prints for a PV of the group it cannot see.
_UNKNOWN_PV = "[unknown]"


def lvm_config(devices: Sequence[str]) -> str:
    """vdsm's ``--config`` text, on one line, with a filter accepting only ``devices``."""
    accept = "|".join(f"^{d}$" for d in devices)
    device_opts = [
        'preferred_names=["^/dev/mapper/"]',
        "ignore_suspended_devices=1",
        "write_cache_state=0",
        "disable_after_error_count=3",
        f'filter=["a|{accept}|", "r|.*|"]' if devices else 'filter=["r|.*|"]',
        'hints="none"',
        "obtain_device_list_from_udev=0",
    ]
    sections = {
        "devices": device_opts,
        "global": ["prioritise_write_locks=1", "wait_for_locks=1", "use_lvmpolld=1"],
        "backup": ["retain_min=50", "retain_days=0"],
    }
    return " ".join(f"{name} {{ {' '.join(opts)} }}" for name, opts in sections.items())


def multipath_devices(sys_block: Path = Path("/sys/block")) -> list[str]:
    """The host's multipath devices, ``/dev/mapper/<name>``, as vdsm lists them.

    A device-mapper device is a multipath device when its ``dm/uuid`` starts with
    ``mpath-``. (vdsm also leaves out devices its configuration blacklists and managed
    volumes; neither holds a storage domain.)
    """
    found = []
    for dm in sorted(sys_block.glob("dm-*/dm")):
        try:
            uuid = (dm / "uuid").read_text().strip()
            name = (dm / "name").read_text().strip()
        except OSError:
            continue
        if not uuid.startswith("mpath-"):
            continue
        device = f"/dev/mapper/{name}"
        if _DEVICE_RE.match(device):
            found.append(device)
        else:
            log.warning("multipath device %r has characters LVM options cannot carry; "
                        "not searched", device)
    return found


def is_in_use(stderr: str) -> bool:
    """LVM's refusal to deactivate an open LV, recognised per stripped stderr line."""
    return any(_IN_USE_RE.match(line.strip()) for line in stderr.splitlines())


def is_not_found(stderr: str) -> bool:
    return any(r.search(stderr) for r in _NOT_FOUND_RES)


class LvmVolumeActivator(VolumeActivator):
    """:class:`VolumeActivator` over LVM.

    ``search_devices`` are devices to look for a domain's physical volumes on, besides the
    host's multipath devices (``multipath``; read from ``sys_block``); ``devices`` pins
    the physical volumes of some volume groups instead of learning them. ``root``
    prefixes every host path (``/dev``, ``/run/vdsm``, ``/rhev``), for tests; ``dev``
    overrides where LVM's device nodes are (``<root>/dev`` by default), so a test can
    activate real LVs yet keep links aside. ``owner``: who owns the links and folders
    (vdsm's ``vdsm:kvm`` by default, see :class:`Ownership`).
    """

    def __init__(self, root: Path = Path("/"), runner: CommandRunner | None = None,
                 lvm: str = "lvm", devices: Mapping[str, Sequence[str]] | None = None,
                 *, dev: Path | None = None, search_devices: Sequence[str] = (),
                 multipath: bool = True, sys_block: Path = Path("/sys/block"),
                 owner: Ownership | None = None) -> None:
        self.root = Path(root)
        self.dev = Path(dev) if dev is not None else self.root / "dev"
        self.runner = runner if runner is not None else SubprocessRunner()
        self.lvm = lvm
        self.devices = {vg: _checked(devs, f"for {vg}") for vg, devs in (devices or {}).items()}
        if not all(self.devices.values()):
            raise ValueError("a pinned volume group needs at least one device")
        self.extra_devices = _checked(search_devices, "to search")
        self.multipath = multipath
        self.sys_block = Path(sys_block)
        self.links = BlockLinks(self.root, owner)
        self._learned: dict[str, tuple[str, ...]] = {}
        self._learned_lock = threading.Lock()

    # --- VolumeActivator -------------------------------------------------------------

    def prepare(self, volume: VolumeRef) -> Media:
        was_active = self.is_active(volume)
        if was_active:
            self._lvchange(volume, "--refresh")
        else:
            self._lvchange(volume, "--autobackup", "n", "--available", "y")
        try:
            media = self.links.create(volume, str(self.device_path(volume)))
        except StorageError:
            if not was_active:
                self._deactivate_after_failure(volume)
            raise
        log.info("prepared volume %s at %s", volume, media.path)
        return media

    def teardown(self, volume: VolumeRef) -> None:
        self._lvchange(volume, "--autobackup", "n", "--available", "n")
        self.links.remove(volume)
        log.info("tore down volume %s", volume)

    def is_active(self, volume: VolumeRef) -> bool:
        return self.device_path(volume).exists()

    def resolve_path(self, path: str) -> Media:
        return resolve_legacy_path(path)

    # --- listing ---------------------------------------------------------------------

    # --- which devices LVM sees ------------------------------------------------------

    def search_devices(self) -> tuple[str, ...]:
        """Where to look for a domain: the multipath devices now, and the configured ones."""
        found = set(self.extra_devices)
        if self.multipath:
            found.update(multipath_devices(self.sys_block))
        return tuple(sorted(found))

    def devices_of(self, vg: str) -> tuple[str, ...]:
        """The physical volumes of ``vg``: pinned, learned earlier, or learned now.

        Learning runs ``vgs -o vg_name,pv_name`` on the search devices (vdsm reads
        ``pv_name`` of its ``vgs`` the same way). When that fails (no such group on any
        of them) the search devices are the answer, and the command itself says what is
        wrong.
        """
        pinned = self.devices.get(vg)
        if pinned is not None:
            return pinned
        with self._learned_lock:
            learned = self._learned.get(vg)
        if learned is not None:
            return learned
        wide = self._search_devices_for(vg)
        result = self._run_on(wide, "vgs", *_REPORT_FLAGS, "-o", "vg_name,pv_name", vg)
        if not result.ok:
            return wide
        pvs = set()
        for line in result.stdout.splitlines():
            fields = [f.strip() for f in line.split(_SEPARATOR)]
            if len(fields) == 2 and fields[0] == vg and fields[1] != _UNKNOWN_PV:
                pvs.add(fields[1])
        if not pvs or not all(_DEVICE_RE.match(pv) for pv in pvs):
            log.warning("volume group %s: unexpected physical volumes %s; using the search "
                        "devices", vg, sorted(pvs))
            return wide
        learned = tuple(sorted(pvs))
        with self._learned_lock:
            self._learned[vg] = learned
        log.debug("volume group %s is on %s", vg, ", ".join(learned))
        return learned

    def forget(self, vg: str) -> None:
        """Learn ``vg``'s physical volumes again at its next command."""
        with self._learned_lock:
            self._learned.pop(vg, None)

    # --- helpers ---------------------------------------------------------------------

    def device_path(self, volume: VolumeRef) -> Path:
        return self.dev / volume.domain_id / volume.volume_id

    def command(self, command: str, *args: str, devices: Sequence[str]) -> list[str]:
        """The argv of an LVM command that may see ``devices`` only."""
        return [self.lvm, command, "--devices", ",".join(devices),
                "--config", lvm_config(devices), *args]

    def _search_devices_for(self, vg: str) -> tuple[str, ...]:
        wide = self.search_devices()
        if not wide:
            raise StorageError(
                f"no devices to look for volume group {vg} on: the host has no multipath "
                f"devices and no search devices are configured (lvm_devices)")
        return wide

    def _run_on(self, devices: Sequence[str], command: str, *args: str) -> CompletedCommand:
        argv = self.command(command, *args, devices=devices)
        try:
            return self.runner.run(argv)
        except CommandError as e:
            raise StorageError(str(e)) from e

    def run(self, command: str, *args: str, vg: str) -> CompletedCommand:
        """An LVM command about ``vg``, on ``vg``'s devices; if that fails, once more on the
        search devices."""
        narrow = self.devices_of(vg)
        result = self._run_on(narrow, command, *args)
        if result.ok or is_in_use(result.stderr):
            return result
        self.forget(vg)
        wide = self.search_devices()
        if not wide or wide == narrow:
            return result
        log.warning("lvm %s failed on the devices of %s (%s): %s; retrying on %s",
                    command, vg, ",".join(narrow), "; ".join(result.stderr_lines),
                    ",".join(wide))
        return self._run_on(wide, command, *args)

    def _lvchange(self, volume: VolumeRef, *options: str) -> None:
        lv = f"{volume.domain_id}/{volume.volume_id}"
        result = self.run("lvchange", *options, lv, vg=volume.domain_id)
        if not result.ok:
            raise self._error(result, f"logical volume {lv}")

    def _deactivate_after_failure(self, volume: VolumeRef) -> None:
        """Undo an activation whose links could not be made (the original error wins)."""
        try:
            self._lvchange(volume, "--autobackup", "n", "--available", "n")
        except StorageError:
            log.exception("could not deactivate %s after its links failed", volume)

    def _error(self, result: CompletedCommand, what: str) -> StorageError:
        stderr = "; ".join(result.stderr_lines)
        if is_in_use(result.stderr):
            return VolumeInUse(f"{what}: {stderr}")
        if is_not_found(result.stderr):
            return VolumeNotFound(f"{what}: {stderr}")
        return StorageError(f"{' '.join(result.argv[:2])} {what} failed "
                            f"(rc={result.returncode}): {stderr}")


def _checked(devices: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(devices, str):
        raise TypeError(f"devices {what}: expected a list of paths, got {devices!r}")
    for d in devices:
        if not _DEVICE_RE.match(d):
            raise ValueError(f"unsupported device path {what}: {d!r}")
    return tuple(devices)
