"""ISO volumes on an oVirt block storage domain, activated with LVM as vdsm does.

A block storage domain is a volume group named by the domain UUID; a volume is a logical
volume named by the volume UUID, tagged ``IU_<image UUID>``. Every command runs as
``lvm <command> --config '<conf>' ...`` where ``conf`` is vdsm's command-line
configuration: it confines LVM to the domain's physical volumes (when known), disables the
persistent device cache and hints, and waits for locks. Activation is
``lvchange --autobackup n --available y VG/LV`` (``--refresh`` for an LV already active),
deactivation ``--available n``. LVM refuses to deactivate an LV that is open, printing
``Logical volume VG/LV in use.``; that is reported as :class:`VolumeInUse`, and the
volume's links stay in place for the VM still using it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

IMAGE_TAG_PREFIX = "IU_"

_IN_USE_RE = re.compile(r"^\s*Logical volume \S+ in use\.?$")
_NOT_FOUND_RES = (
    re.compile(r"Failed to find logical volume"),
    re.compile(r"Volume group \"[^\"]*\" not found"),
    re.compile(r"One or more specified logical volume\(s\) not found"),
)
# Device paths go into an LVM regex between '|' delimiters and double quotes: allow
# only characters that are literal there (plus '.', harmless as "any character").
_DEVICE_RE = re.compile(r"^/dev/[A-Za-z0-9_.:/-]+$")
_LVS_FIELDS = ("uuid", "name", "vg_name", "attr", "size", "tags")
_SEPARATOR = "|"


def lvm_config(devices: Sequence[str] | None) -> str:
    """vdsm's ``--config`` text, on one line.

    ``devices`` are the only block devices LVM may look at (a filter accepting each
    and rejecting everything else); ``None`` leaves the host's own filter in force.
    """
    device_opts = [
        'preferred_names=["^/dev/mapper/"]',
        "ignore_suspended_devices=1",
        "write_cache_state=0",
        "disable_after_error_count=3",
    ]
    if devices is not None:
        accept = "".join(f'"a|^{d}$|", ' for d in devices)
        device_opts.append(f'filter=[{accept}"r|.*|"]')
        # With a devices file in use LVM would ignore devices not listed in it.
        device_opts.append("use_devicesfile=0")
    device_opts += ['hints="none"', "obtain_device_list_from_udev=0"]
    sections = {
        "devices": device_opts,
        "global": ["prioritise_write_locks=1", "wait_for_locks=1", "use_lvmpolld=1"],
        "backup": ["retain_min=50", "retain_days=0"],
    }
    return " ".join(f"{name} {{ {' '.join(opts)} }}" for name, opts in sections.items())


def is_in_use(stderr: str) -> bool:
    """LVM's refusal to deactivate an open LV, recognised per stripped stderr line."""
    return any(_IN_USE_RE.match(line.strip()) for line in stderr.splitlines())


def is_not_found(stderr: str) -> bool:
    return any(r.search(stderr) for r in _NOT_FOUND_RES)


@dataclass(frozen=True, slots=True)
class LogicalVolume:
    uuid: str
    name: str
    vg_name: str
    attr: str
    size: int
    tags: tuple[str, ...]

    @property
    def active(self) -> bool:
        """``lv_attr`` position 5 is ``a`` for an active LV (``X`` when unknown)."""
        return len(self.attr) > 4 and self.attr[4] == "a"

    @property
    def image_id(self) -> str | None:
        for tag in self.tags:
            if tag.startswith(IMAGE_TAG_PREFIX):
                return tag[len(IMAGE_TAG_PREFIX):]
        return None


class LvmVolumeActivator(VolumeActivator):
    """:class:`VolumeActivator` over LVM.

    ``devices`` maps a volume group (storage domain UUID) to its physical volumes; commands
    about that group see only those devices. ``root`` prefixes every host path (``/dev``,
    ``/run/vdsm``, ``/rhev``), for tests; ``dev`` overrides where LVM's device nodes are
    (``<root>/dev`` by default), so a test can activate real LVs yet keep links aside.
    ``owner``: who owns the links and folders (vdsm's ``vdsm:kvm`` by default, see
    :class:`Ownership`).
    """

    def __init__(self, root: Path = Path("/"), runner: CommandRunner | None = None,
                 lvm: str = "lvm", devices: Mapping[str, Sequence[str]] | None = None,
                 *, dev: Path | None = None, owner: Ownership | None = None) -> None:
        self.root = Path(root)
        self.dev = Path(dev) if dev is not None else self.root / "dev"
        self.runner = runner if runner is not None else SubprocessRunner()
        self.lvm = lvm
        self.devices: dict[str, tuple[str, ...]] = {}
        for vg, devs in (devices or {}).items():
            for d in devs:
                if not _DEVICE_RE.match(d):
                    raise ValueError(f"unsupported device path for {vg}: {d!r}")
            self.devices[vg] = tuple(devs)
        self.links = BlockLinks(self.root, owner)

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

    def list_volumes(self, vg: str) -> list[LogicalVolume]:
        """Every logical volume of ``vg`` as LVM's metadata describes it."""
        result = self._run("lvs", "--noheadings", "--units", "b", "--nosuffix",
                           "--separator", _SEPARATOR, "-o", ",".join(_LVS_FIELDS), vg,
                           vg=vg)
        if not result.ok:
            raise self._error(result, f"volume group {vg}")
        return [_parse_lv(line) for line in result.stdout.splitlines() if line.strip()]

    def find_image(self, vg: str, image_id: str) -> list[LogicalVolume]:
        """The volumes of image ``image_id``: those tagged ``IU_<image_id>``."""
        tag = IMAGE_TAG_PREFIX + image_id
        return [lv for lv in self.list_volumes(vg) if tag in lv.tags]

    # --- helpers ---------------------------------------------------------------------

    def device_path(self, volume: VolumeRef) -> Path:
        return self.dev / volume.domain_id / volume.volume_id

    def command(self, command: str, *args: str, vg: str) -> list[str]:
        """The argv of an LVM command about volume group ``vg``."""
        return [self.lvm, command, "--config", lvm_config(self.devices.get(vg)), *args]

    def _run(self, command: str, *args: str, vg: str) -> CompletedCommand:
        argv = self.command(command, *args, vg=vg)
        try:
            return self.runner.run(argv)
        except CommandError as e:
            raise StorageError(str(e)) from e

    def _lvchange(self, volume: VolumeRef, *options: str) -> None:
        lv = f"{volume.domain_id}/{volume.volume_id}"
        result = self._run("lvchange", *options, lv, vg=volume.domain_id)
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


def _parse_lv(line: str) -> LogicalVolume:
    fields = line.strip().split(_SEPARATOR)
    if len(fields) != len(_LVS_FIELDS):
        raise StorageError(f"unexpected lvs output: {line.strip()!r}")
    uuid, name, vg_name, attr, size, tags = fields
    try:
        size_bytes = int(size)
    except ValueError:
        raise StorageError(f"unexpected lvs size: {size!r}") from None
    return LogicalVolume(uuid, name, vg_name, attr, size_bytes,
                         tuple(t for t in tags.split(",") if t))
