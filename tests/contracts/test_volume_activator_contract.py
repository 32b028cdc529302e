"""One contract for every VolumeActivator, so the in-memory one cannot drift from the real ones.

Backends:

* ``memory``: the in-memory host (a volume is "held" by a VM's tray naming its path);
* ``loop``: real read-only loop devices (root only; held by a process with it open);
* ``lvm-emulated``: the LVM activator driving :class:`EmulatedLvm`, a runner that checks
  each argv and answers as ``lvm lvchange`` does (creates and removes the ``/dev/<vg>/<lv>``
  node, refuses with "in use", fails to find unknown LVs). Real LVM activation needs
  device-mapper; where it runs, tests/storage/test_lvm_metadata.py covers it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from ovirt_cdrom.adapters.lvm import LvmVolumeActivator
from ovirt_cdrom.adapters.memory import MemoryHost, MemoryVolumeActivator
from ovirt_cdrom.adapters.runner import CommandRunner, CompletedCommand
from ovirt_cdrom.adapters.vdsm_layout import block_path, tray_of
from ovirt_cdrom.domain.errors import ImageFileNotFound, VolumeInUse, VolumeNotFound
from ovirt_cdrom.domain.model import DiskType, Media, VolumeRef
from ovirt_cdrom.ports import VolumeActivator
from rig import vm_id
from storage.realdev import LoopSandbox, loop_sandbox, new_volume


class Backend(abc.ABC):
    activator: VolumeActivator
    root: Path  # where the host's /run and /rhev are

    @abc.abstractmethod
    def add_volume(self) -> VolumeRef:
        """A volume that storage has, inactive."""

    @abc.abstractmethod
    def add_file(self) -> str:
        """A legacy ISO path that exists."""

    @abc.abstractmethod
    def missing_path(self) -> str:
        """A legacy ISO path that does not exist."""

    @abc.abstractmethod
    @contextmanager
    def held(self, volume: VolumeRef, media: Media) -> Iterator[None]:
        """Someone (a VM) holds the prepared volume open."""


class MemoryBackend(Backend):
    def __init__(self) -> None:
        self.host = MemoryHost(files=set())
        self.activator = MemoryVolumeActivator(self.host)
        self.root = Path("/")

    def add_volume(self) -> VolumeRef:
        volume = new_volume()
        self.host.add_volume(volume)
        return volume

    def add_file(self) -> str:
        path = "/iso/legacy.iso"
        assert self.host.files is not None
        self.host.files.add(path)
        return path

    def missing_path(self) -> str:
        return "/iso/missing.iso"

    @contextmanager
    def held(self, volume: VolumeRef, media: Media) -> Iterator[None]:
        vm = vm_id(("holder", volume.volume_id))
        self.host.add_vm(vm)
        self.host.add_drive(vm, "sata", 2, media)
        yield
        self.host.remove_vm(vm)


class LoopBackend(Backend):
    def __init__(self, sandbox: LoopSandbox) -> None:
        self.sandbox = sandbox
        self.activator = sandbox.activator()
        self.root = sandbox.root

    def add_volume(self) -> VolumeRef:
        volume = new_volume()
        self.sandbox.add_volume(volume)
        return volume

    def add_file(self) -> str:
        return self.sandbox.add_file()

    def missing_path(self) -> str:
        return str(self.sandbox.base / "missing.iso")

    @contextmanager
    def held(self, volume: VolumeRef, media: Media) -> Iterator[None]:
        with self.sandbox.hold(media.path):
            yield


class EmulatedLvm(CommandRunner):
    """Answers ``lvm lvchange`` and ``lvm vgs`` as LVM does, keeping device nodes under
    ``dev``; every volume group lies on :data:`EMULATED_PV`, seen only through it."""

    def __init__(self, dev: Path) -> None:
        self.dev = dev
        self.lvs: set[str] = set()
        self.held: set[str] = set()
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str]) -> CompletedCommand:
        args = tuple(argv)
        self.calls.append(args)
        assert args[0] == "lvm" and args[2] == "--devices" and args[4] == "--config", args
        vgs = {lv.split("/")[0] for lv in self.lvs}
        if args[1] == "vgs":
            vg = args[-1]
            if vg in vgs and EMULATED_PV in args[3].split(","):
                return CompletedCommand(args, 0, f"  {vg}|{EMULATED_PV}\n", "")
            return CompletedCommand(args, 5, "", f'  Volume group "{vg}" not found\n')
        assert args[1] == "lvchange", args
        options, lv = args[6:-1], args[-1]
        assert options in (("--autobackup", "n", "--available", "y"),
                           ("--autobackup", "n", "--available", "n"),
                           ("--refresh",)), options
        node = self.dev / lv
        if lv not in self.lvs:
            return CompletedCommand(args, 5, "", f'  Failed to find logical volume "{lv}"\n')
        if options[-1] == "n":
            if lv in self.held:
                return CompletedCommand(args, 5, "", f"  Logical volume {lv} in use.\n")
            node.unlink(missing_ok=True)
        else:
            node.parent.mkdir(parents=True, exist_ok=True)
            node.touch()
        return CompletedCommand(args, 0, "", "")


EMULATED_PV = "/dev/mapper/36001405emulated"


class EmulatedLvmBackend(Backend):
    def __init__(self, base: Path) -> None:
        self.base = self.root = base
        self.lvm = EmulatedLvm(base / "dev")
        self.activator = LvmVolumeActivator(root=base, runner=self.lvm, multipath=False,
                                            search_devices=[EMULATED_PV])

    def add_volume(self) -> VolumeRef:
        volume = new_volume()
        self.lvm.lvs.add(f"{volume.domain_id}/{volume.volume_id}")
        return volume

    def add_file(self) -> str:
        path = self.base / "legacy.iso"
        path.write_bytes(b"iso")
        return str(path)

    def missing_path(self) -> str:
        return str(self.base / "missing.iso")

    @contextmanager
    def held(self, volume: VolumeRef, media: Media) -> Iterator[None]:
        lv = f"{volume.domain_id}/{volume.volume_id}"
        self.lvm.held.add(lv)
        yield
        self.lvm.held.discard(lv)


@pytest.fixture(params=["memory", pytest.param("loop", marks=pytest.mark.root),
                        "lvm-emulated"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
    elif request.param == "loop":
        with loop_sandbox(tmp_path) as sandbox:
            yield LoopBackend(sandbox)
    else:
        yield EmulatedLvmBackend(tmp_path)


def test_prepare_returns_block_media_at_the_volume_path(backend: Backend) -> None:
    volume = backend.add_volume()

    media = backend.activator.prepare(volume)

    assert media.disk_type is DiskType.BLOCK
    assert volume.in_tray(tray_of(media.path))
    assert backend.activator.is_active(volume)


def test_the_volume_is_where_vdsm_puts_it_under_the_host_root(backend: Backend) -> None:
    volume = backend.add_volume()

    media = backend.activator.prepare(volume)

    # /rhev/data-center/mnt/blockSD/<sd>/images/<img>/<vol>, one rule for every host.
    assert media.path == str(backend.root / block_path(volume).lstrip("/"))


def test_prepare_is_idempotent(backend: Backend) -> None:
    volume = backend.add_volume()

    first = backend.activator.prepare(volume)
    second = backend.activator.prepare(volume)

    assert first == second
    assert backend.activator.is_active(volume)
    backend.activator.teardown(volume)
    assert not backend.activator.is_active(volume)


def test_teardown_of_an_inactive_volume_succeeds(backend: Backend) -> None:
    volume = backend.add_volume()

    backend.activator.teardown(volume)

    assert not backend.activator.is_active(volume)


def test_is_active_tracks_prepare_and_teardown(backend: Backend) -> None:
    a, b = backend.add_volume(), backend.add_volume()
    seen = []

    for step in (lambda: None, lambda: backend.activator.prepare(a),
                 lambda: backend.activator.prepare(b), lambda: backend.activator.teardown(a),
                 lambda: backend.activator.teardown(b)):
        step()
        seen.append((backend.activator.is_active(a), backend.activator.is_active(b)))

    assert seen == [(False, False), (True, False), (True, True), (False, True), (False, False)]


def test_a_volume_storage_does_not_have_is_not_found(backend: Backend) -> None:
    missing = new_volume()

    with pytest.raises(VolumeNotFound):
        backend.activator.prepare(missing)
    with pytest.raises(VolumeNotFound):
        backend.activator.teardown(missing)
    assert not backend.activator.is_active(missing)


def test_teardown_of_a_held_volume_is_refused_and_leaves_it_active(backend: Backend) -> None:
    volume = backend.add_volume()
    media = backend.activator.prepare(volume)

    with backend.held(volume, media), pytest.raises(VolumeInUse):
        backend.activator.teardown(volume)

    assert backend.activator.is_active(volume)
    assert backend.activator.prepare(volume) == media
    backend.activator.teardown(volume)
    assert not backend.activator.is_active(volume)


def test_resolve_path_of_an_existing_file(backend: Backend) -> None:
    path = backend.add_file()

    assert backend.activator.resolve_path(path) == Media(path, DiskType.FILE)


def test_resolve_path_of_a_missing_file_is_image_file_not_found(backend: Backend) -> None:
    with pytest.raises(ImageFileNotFound):
        backend.activator.resolve_path(backend.missing_path())
