"""The loop activator on real loop devices (root only)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ovirt_cdrom.adapters.loop import LoopVolumeActivator
from ovirt_cdrom.adapters.vdsm_layout import tray_of
from ovirt_cdrom.domain.errors import StorageError, VolumeInUse, VolumeNotFound
from ovirt_cdrom.domain.model import DiskType, VolumeRef

from .realdev import LoopSandbox, loop_sandbox, new_volume

pytestmark = pytest.mark.root


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[LoopSandbox]:
    with loop_sandbox(tmp_path) as sandbox:
        yield sandbox


@pytest.fixture
def activator(sandbox: LoopSandbox) -> LoopVolumeActivator:
    return sandbox.activator()


def _domain_dir(volume: VolumeRef) -> str:
    return f"rhev/data-center/mnt/blockSD/{volume.domain_id}"


def _device_of(media_path: str) -> str:
    return os.path.realpath(media_path)


def test_prepare_exposes_a_read_only_loop_device_at_vdsm_layout(
        sandbox: LoopSandbox, activator: LoopVolumeActivator) -> None:
    volume = new_volume()
    sandbox.add_volume(volume, b"CD001 payload")

    media = activator.prepare(volume)

    assert media.disk_type is DiskType.BLOCK
    assert volume.in_tray(tray_of(media.path))
    assert media.path == str(sandbox.root / "rhev/data-center/mnt/blockSD" / volume.domain_id
                             / "images" / volume.image_id / volume.volume_id)
    run_dir = sandbox.root / "run/vdsm/storage" / volume.domain_id / volume.image_id
    device = os.readlink(run_dir / volume.volume_id)
    assert device.startswith("/dev/loop")
    assert os.readlink(Path(media.path).parent) == str(run_dir)
    assert _device_of(media.path) == device
    assert sandbox.attached() == [device]
    name = device.rsplit("/", 1)[1]
    assert Path(f"/sys/block/{name}/ro").read_text().strip() == "1"
    with open(media.path, "rb") as f:
        assert f.read(13) == b"CD001 payload"


def test_prepare_twice_reuses_the_attachment(
        sandbox: LoopSandbox, activator: LoopVolumeActivator) -> None:
    volume = new_volume()
    sandbox.add_volume(volume)

    first = activator.prepare(volume)
    second = activator.prepare(volume)

    assert first == second
    assert len(sandbox.attached()) == 1


def test_teardown_detaches_and_removes_links(
        sandbox: LoopSandbox, activator: LoopVolumeActivator) -> None:
    volume = new_volume()
    sandbox.add_volume(volume)
    media = activator.prepare(volume)

    activator.teardown(volume)

    assert not activator.is_active(volume)
    assert sandbox.attached() == []
    assert not os.path.lexists(media.path)
    assert not os.path.lexists(Path(media.path).parent)
    assert not (sandbox.root / "run/vdsm/storage" / volume.domain_id
                / volume.image_id).exists()


def test_two_volumes_get_two_devices(sandbox: LoopSandbox,
                                     activator: LoopVolumeActivator) -> None:
    a, b = new_volume(), new_volume()
    sandbox.add_volume(a)
    sandbox.add_volume(b)

    dev_a = _device_of(activator.prepare(a).path)
    dev_b = _device_of(activator.prepare(b).path)
    activator.teardown(a)

    assert dev_a != dev_b
    assert sandbox.attached() == [dev_b]
    assert activator.is_active(b)


def test_teardown_while_a_process_holds_the_device_is_refused(
        sandbox: LoopSandbox, activator: LoopVolumeActivator) -> None:
    volume = new_volume()
    sandbox.add_volume(volume)
    media = activator.prepare(volume)
    device = _device_of(media.path)

    with sandbox.hold(device) as holder:
        assert any(f"pid {holder.pid} " in h for h in activator.holders(device))
        with pytest.raises(VolumeInUse, match=str(holder.pid)):
            activator.teardown(volume)
        assert activator.is_active(volume)
        assert sandbox.attached() == [device]
        assert _device_of(media.path) == device  # links stay for the VM using it

    assert activator.holders(device) == []
    activator.teardown(volume)
    assert not activator.is_active(volume)


def test_a_fresh_activator_sees_what_another_one_attached(sandbox: LoopSandbox) -> None:
    volume = new_volume()
    sandbox.add_volume(volume)
    media = sandbox.activator().prepare(volume)

    fresh = sandbox.activator()

    assert fresh.is_active(volume)
    assert fresh.prepare(volume) == media
    assert len(sandbox.attached()) == 1
    fresh.teardown(volume)
    assert not sandbox.activator().is_active(volume)


def test_missing_image_file_is_volume_not_found(activator: LoopVolumeActivator) -> None:
    volume = new_volume()
    with pytest.raises(VolumeNotFound):
        activator.prepare(volume)
    with pytest.raises(VolumeNotFound):
        activator.teardown(volume)
    assert not activator.is_active(volume)


def test_prepare_into_vdsm_image_directory_leaves_it_as_found(
        sandbox: LoopSandbox, activator: LoopVolumeActivator) -> None:
    volume = new_volume()
    sandbox.add_volume(volume, b"CD001 in vdsm's folder")
    image_dir = sandbox.root / _domain_dir(volume) / "images" / volume.image_id
    image_dir.mkdir(parents=True)  # vdsm's, with a link of another volume of the image
    (image_dir / "other-volume").symlink_to(f"/dev/{volume.domain_id}/other-volume")
    before = sorted((p.name, os.readlink(p)) for p in image_dir.iterdir())

    media = activator.prepare(volume)

    assert media.path == str(image_dir / volume.volume_id)
    assert not image_dir.is_symlink()
    with open(media.path, "rb") as f:
        assert f.read(22) == b"CD001 in vdsm's folder"
    activator.teardown(volume)
    assert sorted((p.name, os.readlink(p)) for p in image_dir.iterdir()) == before
    assert not (sandbox.root / "run/ovirt-cdrom").exists()


def test_a_prepare_whose_links_fail_detaches_what_it_attached(
        sandbox: LoopSandbox, activator: LoopVolumeActivator) -> None:
    volume = new_volume()
    sandbox.add_volume(volume)
    blocker = sandbox.root / _domain_dir(volume)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")

    with pytest.raises(StorageError, match="cannot link volume"):
        activator.prepare(volume)

    assert sandbox.attached() == []
    assert not (sandbox.root / "run").exists()


def test_a_prepare_whose_links_fail_keeps_an_attachment_it_found(
        sandbox: LoopSandbox, activator: LoopVolumeActivator) -> None:
    volume = new_volume()
    sandbox.add_volume(volume)
    device = _device_of(activator.prepare(volume).path)
    shutil.rmtree(sandbox.root / "rhev")
    blocker = sandbox.root / _domain_dir(volume)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")

    with pytest.raises(StorageError, match="cannot link volume"):
        activator.prepare(volume)

    assert sandbox.attached() == [device]
    activator.teardown(volume)
