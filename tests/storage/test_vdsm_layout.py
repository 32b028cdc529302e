"""The links and folders at vdsm's paths: vdsm's own image directory, failures, ownership.

On a vdsm 4.50 host ``/rhev/data-center/mnt/blockSD/<sd>/images/<img>`` is usually a real
directory that vdsm made (its ``produceVolume`` runs before it links anything) holding
``<vol> -> /dev/<sd>/<vol>``; vdsm runs as ``vdsm:kvm`` (36:36). These tests build such a
host under a scratch root and drive the LVM activator through a recording runner (the
commands are covered in test_lvm_commands.py and, for real, test_lvm_hidden_domain.py).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import unavailable
from ovirt_cdrom.adapters.lvm import LvmVolumeActivator
from ovirt_cdrom.adapters.runner import RecordingRunner
from ovirt_cdrom.adapters.vdsm_layout import block_path
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.errors import StorageError
from rig import uid as uid_of
from rig import volume

VOLUME = volume("iso")
SD, IMG, VOL = VOLUME.domain_id, VOLUME.image_id, VOLUME.volume_id
PVS = ("/dev/mapper/36001405a",)
VDSM_UID = VDSM_GID = 36
STORAGE = "run/vdsm/storage"
RUN = f"{STORAGE}/{SD}/{IMG}"  # and the run link RUN/VOL
DOMAIN = f"rhev/data-center/mnt/blockSD/{SD}"
IMAGE = f"{DOMAIN}/images/{IMG}"  # libvirt's path is IMAGE/VOL
OURS = "run/ovirt-cdrom"  # our records of links added to vdsm's directories

Entry = tuple[str, str | None, int, int, int, int]


def snapshot(root: Path) -> dict[str, Entry]:
    """Every entry under root: kind, link target, mode, owner, inode."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = os.lstat(path)
            kind = "link" if stat.S_ISLNK(st.st_mode) else \
                "dir" if stat.S_ISDIR(st.st_mode) else "file"
            target = os.readlink(path) if kind == "link" else None
            found[str(path.relative_to(root))] = (kind, target, stat.S_IMODE(st.st_mode),
                                                  st.st_uid, st.st_gid, st.st_ino)
    return found


def temporaries(root: Path) -> list[str]:
    return [p for p in snapshot(root) if "tmp" in Path(p).name]


@pytest.fixture
def runner() -> RecordingRunner:
    return RecordingRunner()


@pytest.fixture
def activator(tmp_path: Path, runner: RecordingRunner) -> LvmVolumeActivator:
    return LvmVolumeActivator(root=tmp_path, runner=runner, devices={SD: PVS})


class VdsmHost:
    """What vdsm leaves on a host: the domain's folders, an image directory, its links."""

    def __init__(self, root: Path, activator: LvmVolumeActivator) -> None:
        self.device = str(activator.device_path(VOLUME))
        (root / RUN).parent.mkdir(parents=True)
        self.image = root / IMAGE
        self.image.mkdir(parents=True)
        self.image.chmod(0o755)

    def link(self, volume: str, target: str) -> Path:
        path = self.image / volume
        path.symlink_to(target)
        return path


@pytest.fixture
def vdsm(tmp_path: Path, activator: LvmVolumeActivator) -> VdsmHost:
    return VdsmHost(tmp_path, activator)


# --- vdsm's image directory ----------------------------------------------------------


def test_prepare_uses_vdsm_image_directory_and_teardown_leaves_it(
        tmp_path: Path, activator: LvmVolumeActivator, vdsm: VdsmHost) -> None:
    vdsm.link(VOL, vdsm.device)
    before = snapshot(tmp_path)

    media = activator.prepare(VOLUME)

    assert media.path == str(vdsm.image / VOL)
    assert media.path == str(tmp_path) + block_path(VOLUME)
    assert os.readlink(media.path) == vdsm.device
    assert os.readlink(tmp_path / RUN / VOL) == vdsm.device
    after = snapshot(tmp_path)
    assert {p: after[p] for p in before} == before  # vdsm's folder and link untouched
    assert temporaries(tmp_path) == []
    activator.teardown(VOLUME)
    assert snapshot(tmp_path) == before


def test_a_link_missing_from_vdsm_directory_is_added_and_only_it_removed(
        tmp_path: Path, activator: LvmVolumeActivator, vdsm: VdsmHost) -> None:
    sibling = vdsm.link(uid_of("volume", "sibling"), f"/dev/{SD}/sibling")
    before = snapshot(tmp_path)

    media = activator.prepare(VOLUME)

    assert os.readlink(media.path) == vdsm.device
    assert os.readlink(sibling) == f"/dev/{SD}/sibling"
    activator.teardown(VOLUME)
    assert snapshot(tmp_path) == before


def test_a_link_vdsm_made_elsewhere_is_restored_at_teardown(
        tmp_path: Path, activator: LvmVolumeActivator, vdsm: VdsmHost) -> None:
    vdsm.link(VOL, f"/dev/mapper/{SD.replace('-', '--')}-{VOL.replace('-', '--')}")
    before = snapshot(tmp_path)

    media = activator.prepare(VOLUME)
    assert os.readlink(media.path) == vdsm.device
    activator.teardown(VOLUME)

    after = snapshot(tmp_path)
    assert {p: e[:5] for p, e in after.items()} == {p: e[:5] for p, e in before.items()}


def test_a_teardown_after_a_crash_between_record_and_link_leaves_vdsm_directory(
        tmp_path: Path, activator: LvmVolumeActivator, vdsm: VdsmHost) -> None:
    before = snapshot(tmp_path)
    media = activator.prepare(VOLUME)
    os.unlink(media.path)  # as if the process died after writing its record

    activator.teardown(VOLUME)

    assert snapshot(tmp_path) == before


def test_teardown_keeps_a_link_vdsm_replaced_ours_with(
        tmp_path: Path, activator: LvmVolumeActivator, vdsm: VdsmHost) -> None:
    media = activator.prepare(VOLUME)
    os.unlink(media.path)
    vdsm.link(VOL, "/dev/somewhere/else")  # vdsm's now, not ours

    activator.teardown(VOLUME)

    assert os.readlink(media.path) == "/dev/somewhere/else"
    assert not (tmp_path / OURS).exists()


def test_a_dangling_image_link_after_a_reboot_is_used_again(
        tmp_path: Path, activator: LvmVolumeActivator) -> None:
    activator.prepare(VOLUME)
    image = tmp_path / IMAGE
    ino = os.lstat(image).st_ino
    shutil.rmtree(tmp_path / "run")  # /run is gone with the reboot, /rhev stays

    media = activator.prepare(VOLUME)

    assert os.lstat(image).st_ino == ino
    assert os.readlink(media.path) == str(activator.device_path(VOLUME))
    activator.teardown(VOLUME)
    assert not os.path.lexists(image)


def test_what_a_crashed_create_left_under_temporary_names_is_cleared(
        tmp_path: Path, activator: LvmVolumeActivator) -> None:
    storage = tmp_path / STORAGE
    storage.mkdir(parents=True)
    (storage / f".{SD}.ovirt-cdrom-tmp").mkdir()  # died before renaming the folder
    images = (tmp_path / IMAGE).parent
    images.mkdir(parents=True)
    (images / f".{IMG}.ovirt-cdrom-tmp").symlink_to("/nowhere")  # ... or the link

    activator.prepare(VOLUME)

    assert temporaries(tmp_path) == []


# --- failures leave things as found --------------------------------------------------


def _obstruct(root: Path) -> None:
    """A file where the domain's folder under /rhev should be: linking fails there."""
    blocker = root / DOMAIN
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")


def test_prepare_whose_links_fail_deactivates_and_leaves_nothing(
        tmp_path: Path, activator: LvmVolumeActivator, runner: RecordingRunner) -> None:
    _obstruct(tmp_path)
    before = snapshot(tmp_path)

    with pytest.raises(StorageError, match="cannot link volume"):
        activator.prepare(VOLUME)

    assert [c[-5:] for c in runner.commands("lvchange")] == [
        ("--autobackup", "n", "--available", "y", f"{SD}/{VOL}"),
        ("--autobackup", "n", "--available", "n", f"{SD}/{VOL}")]
    assert snapshot(tmp_path) == before


def test_prepare_whose_links_fail_leaves_an_active_volume_active(
        tmp_path: Path, activator: LvmVolumeActivator, runner: RecordingRunner) -> None:
    node = activator.device_path(VOLUME)
    node.parent.mkdir(parents=True)
    node.touch()
    _obstruct(tmp_path)
    before = snapshot(tmp_path)

    with pytest.raises(StorageError, match="cannot link volume"):
        activator.prepare(VOLUME)

    assert [c[-2:] for c in runner.commands("lvchange")] == [("--refresh", f"{SD}/{VOL}")]
    assert snapshot(tmp_path) == before


def test_a_failed_deactivation_after_failed_links_keeps_the_link_error(
        tmp_path: Path, activator: LvmVolumeActivator, runner: RecordingRunner) -> None:
    _obstruct(tmp_path)
    runner.answer(5, stderr="  deactivation failed too\n", when=lambda argv: argv[-2] == "n")

    with pytest.raises(StorageError, match="cannot link volume"):
        activator.prepare(VOLUME)


def test_a_folder_in_place_of_a_link_is_never_replaced(
        tmp_path: Path, activator: LvmVolumeActivator, runner: RecordingRunner) -> None:
    run_link = tmp_path / RUN / VOL
    run_link.mkdir(parents=True)
    (run_link / "keep").write_text("someone's")
    before = snapshot(tmp_path)

    with pytest.raises(StorageError, match="not a link"):
        activator.prepare(VOLUME)

    assert snapshot(tmp_path) == before


# --- ownership -----------------------------------------------------------------------


def _require_root() -> None:
    if os.geteuid() != 0:
        unavailable("giving files another owner needs root")


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A scratch root another user can walk into (tmp_path's parents are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="ovirt-cdrom-owner-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def _configured(root: Path, **settings: str) -> LvmVolumeActivator:
    """The LVM activator as the container builds it for a host, commands recorded."""
    app = build({"activation": "lvm", "run_root": str(root), "lvm_devices": PVS[0],
                 **settings}, environ={})
    activator = app.libvirt.volumes()
    assert isinstance(activator, LvmVolumeActivator)
    activator.runner = RecordingRunner()
    return activator


@pytest.mark.root
def test_folders_and_links_get_vdsm_owner_and_mode(open_root: Path) -> None:
    _require_root()
    activator = _configured(open_root, link_user=str(VDSM_UID), link_group=str(VDSM_GID))
    old_umask = os.umask(0o077)
    try:
        activator.prepare(VOLUME)
    finally:
        os.umask(old_umask)

    made = snapshot(open_root)
    assert made, "nothing was made"
    for path, (kind, _, mode, uid, gid, _) in made.items():
        assert (uid, gid) == (VDSM_UID, VDSM_GID), path
        if kind == "dir":
            assert mode == 0o755, path
    assert made[f"run/vdsm/storage/{SD}/{IMG}/{VOL}"][0] == "link"
    assert made[f"rhev/data-center/mnt/blockSD/{SD}/images/{IMG}"][0] == "link"


@pytest.mark.root
def test_vdsm_can_add_its_images_beside_ours_and_clean_up_after_us(open_root: Path) -> None:
    _require_root()
    activator = _configured(open_root, link_user=str(VDSM_UID), link_group=str(VDSM_GID))
    activator.prepare(VOLUME)

    # vdsm (36:36) prepares another disk of the domain, then tears ours down as it would.
    script = (
        "import os, shutil, sys\n"
        "sd, ours, image_link = sys.argv[1:]\n"
        "other = os.path.join(sd, 'other-image')\n"
        "os.makedirs(other)\n"
        "os.symlink('/dev/sd/other', os.path.join(other, 'other-volume'))\n"
        "shutil.rmtree(ours)\n"
        "os.unlink(image_link)\n")
    python = shutil.which("python3", path="/usr/bin:/bin")  # one vdsm may execute
    if python is None:
        pytest.skip("no system python3 to run as the vdsm user")
    result = subprocess.run(
        [python, "-c", script, str(open_root / STORAGE / SD), str(open_root / RUN),
         str(open_root / IMAGE)],
        user=VDSM_UID, group=VDSM_GID, capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert (open_root / STORAGE / SD / "other-image" / "other-volume").is_symlink()
    assert not os.path.lexists(open_root / IMAGE)


@pytest.mark.root
def test_folders_that_exist_keep_their_owner(open_root: Path) -> None:
    _require_root()
    storage = open_root / STORAGE
    storage.mkdir(parents=True)
    storage.chmod(0o711)
    activator = _configured(open_root, link_user=str(VDSM_UID), link_group=str(VDSM_GID))

    activator.prepare(VOLUME)

    st = os.lstat(storage)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o711)
    assert os.lstat(storage / SD).st_uid == VDSM_UID
