"""vdsm's path layout for an active block volume, shared by the LVM and loop activators.

For volume ``<sd>/<img>/<vol>`` on block device ``D`` (``/dev/<sd>/<vol>`` for LVM), under
``root`` (``/`` on a real host; a scratch folder in tests):

* the run link ``run/vdsm/storage/<sd>/<img>/<vol>`` -> ``D``, as vdsm's
  ``createImageLinks`` makes it (vdsm also reads it at start-up as "this LV is prepared");
* the image path ``rhev/data-center/mnt/blockSD/<sd>/images/<img>``, and libvirt gets
  ``<image path>/<vol>``. The image path is one of two layouts:

  - a link to the run folder ``run/vdsm/storage/<sd>/<img>`` (vdsm's ``linkBCImage``):
    what we make when nothing is there;
  - a real directory holding ``<vol> -> D`` links, made by vdsm (its ``produceVolume``
    validates the image path before linking, so on a vdsm 4.50 host this is what every
    image vdsm ever touched has; it survives vdsm restarts and reboots). We never replace
    or remove it. If it lacks our volume's link we add it, and note that in our own record
    ``run/ovirt-cdrom/links/<sd>/<img>/<vol>`` so that teardown removes exactly that link
    (or restores the link it replaced) and nothing vdsm made.

Rules both activators follow (so tests, the simulator and a real host show the same):

* ``create`` makes only what is missing; when it fails, everything it made in that call
  is removed again, newest first, and links it replaced are restored.
* Each folder and link is made under a temporary name, given its owner and mode, and then
  renamed into place, so it appears with vdsm's owner (``vdsm:kvm``; folders ``0755``,
  what vdsm's own ``makedirs`` gives under its ``022`` umask) even if we crash half way:
  vdsm can then add other images' links beside ours and clean up after us.
* ``remove`` (after the volume was deactivated) removes the run link, the image's run
  folder once it is empty (no other volume of the image is prepared), the image link once
  the folder it points at is gone, and the links recorded in vdsm's directory. It never
  removes a folder it did not make, nor the domain's folders (vdsm keeps those too).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import json
import logging
import os
import pwd
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from ovirt_cdrom.adapters.vdsm_layout import block_path
from ovirt_cdrom.domain.errors import ImageFileNotFound, StorageError
from ovirt_cdrom.domain.model import DiskType, Media, VolumeRef

log = logging.getLogger(__name__)

VDSM_USER = "vdsm"
VDSM_GROUP = "kvm"
# vdsm runs with systemd's default umask 022 and makes folders with os.makedirs/os.mkdir.
VDSM_DIR_MODE = 0o755
_TMP_SUFFIX = ".ovirt-cdrom-tmp"


@dataclass(frozen=True, slots=True)
class Ownership:
    """Who owns the folders and links we make, and the folders' mode."""

    uid: int
    gid: int
    dir_mode: int = VDSM_DIR_MODE

    @classmethod
    def running(cls, dir_mode: int = VDSM_DIR_MODE) -> Ownership:
        return cls(os.geteuid(), os.getegid(), dir_mode)

    @classmethod
    def resolve(cls, user: str | int = VDSM_USER, group: str | int = VDSM_GROUP,
                dir_mode: int = VDSM_DIR_MODE) -> Ownership:
        """``user``/``group`` by name or number (vdsm's ``vdsm:kvm``, uid/gid 36 on oVirt).

        A user name the host does not know (no vdsm installed) falls back to the running
        user and its group; a group name it does not know, to the user's own group.
        """
        if not 0 <= dir_mode <= 0o7777:
            raise ValueError(f"not a folder mode: {dir_mode!r}")
        uid: int
        user_gid: int | None = None
        if isinstance(user, int) or str(user).isdigit():
            uid = int(user)
        else:
            try:
                entry = pwd.getpwnam(str(user))
            except KeyError:
                log.info("no user %r on this host: links and folders get the running "
                         "user's owner", user)
                return cls.running(dir_mode)
            uid, user_gid = entry.pw_uid, entry.pw_gid
        if isinstance(group, int) or str(group).isdigit():
            return cls(uid, int(group), dir_mode)
        try:
            return cls(uid, grp.getgrnam(str(group)).gr_gid, dir_mode)
        except KeyError:
            gid = user_gid if user_gid is not None else os.getegid()
            log.info("no group %r on this host: using gid %d", group, gid)
            return cls(uid, gid, dir_mode)


@dataclass(frozen=True, slots=True)
class _Made:
    """One thing a ``create`` call did, so that a failure can undo it."""

    kind: str  # "dir", "link" or "record"
    path: Path
    previous: str | None = None  # the target of a link that was replaced


@dataclass(frozen=True, slots=True)
class _Record:
    """What our record of a link in vdsm's image directory says."""

    link: Path
    target: str
    previous: str | None  # vdsm's link that ours replaced, restored at teardown


class BlockLinks:
    def __init__(self, root: Path, owner: Ownership | None = None) -> None:
        self.root = Path(root)
        self.owner = owner if owner is not None else Ownership.resolve()
        self.run_dir = self.root / "run" / "vdsm" / "storage"
        self.mnt_dir = self.root / "rhev" / "data-center" / "mnt" / "blockSD"
        # Our own folder: records of links we added to vdsm's image directories.
        self.own_dir = self.root / "run" / "ovirt-cdrom"
        self.record_dir = self.own_dir / "links"
        # Two volumes of one image share folders: one create/remove at a time.
        self._lock = threading.Lock()

    def run_image_dir(self, volume: VolumeRef) -> Path:
        return self.run_dir / volume.domain_id / volume.image_id

    def run_link(self, volume: VolumeRef) -> Path:
        return self.run_image_dir(volume) / volume.volume_id

    def image_path(self, volume: VolumeRef) -> Path:
        """vdsm's image path: a link to :meth:`run_image_dir`, or vdsm's own directory."""
        return self.mnt_dir / volume.domain_id / "images" / volume.image_id

    def record(self, volume: VolumeRef) -> Path:
        """Our note of a link we added to vdsm's image directory."""
        return self.record_dir / volume.domain_id / volume.image_id / volume.volume_id

    def media(self, volume: VolumeRef) -> Media:
        # The path vdsm gives libvirt, under root (the in-memory host uses the same one).
        return Media(str(self.root / block_path(volume).lstrip("/")), DiskType.BLOCK)

    def in_vdsm_directory(self, volume: VolumeRef) -> bool:
        """Whether the image path is a directory we did not make (vdsm's layout)."""
        image = self.image_path(volume)
        if image.is_symlink() and os.readlink(image) == str(self.run_image_dir(volume)):
            return False
        return image.is_dir()

    # --- prepare ---------------------------------------------------------------------

    def create(self, volume: VolumeRef, device: str) -> Media:
        """Link the volume to ``device`` at vdsm's paths; on failure leave things as found."""
        made: list[_Made] = []
        with self._lock:
            try:
                self._create(volume, device, made)
            except OSError as e:
                self._undo(made)
                raise StorageError(f"cannot link volume {volume} to {device}: {e}") from e
        return self.media(volume)

    def _create(self, volume: VolumeRef, device: str, made: list[_Made]) -> None:
        run_image = self.run_image_dir(volume)
        self._make_dirs(run_image, made)
        self._make_link(self.run_link(volume), device, made)
        image = self.image_path(volume)
        if self.in_vdsm_directory(volume):
            link = image / volume.volume_id
            if _points_to(link, device):
                return  # vdsm's own link (or ours, already recorded)
            self._write_record(volume, link, device, made)
            self._make_link(link, device, made)
        else:
            self._make_dirs(image.parent, made)
            # A link to elsewhere (a run folder gone with a reboot, say) is replaced.
            self._make_link(image, str(run_image), made)

    def _make_dirs(self, path: Path, made: list[_Made]) -> None:
        missing = []
        while not os.path.lexists(path):
            if path in (self.root, path.parent):
                raise OSError(errno.ENOENT, f"the root folder {self.root} does not exist")
            missing.append(path)
            path = path.parent
        if not path.is_dir():
            raise OSError(errno.ENOTDIR, f"{path} is not a folder")
        for folder in reversed(missing):
            self._make_dir(folder, made)

    def _make_dir(self, folder: Path, made: list[_Made]) -> None:
        tmp = _tmp_name(folder)
        _remove_tmp(tmp)
        os.mkdir(tmp, 0o700)
        try:
            os.chmod(tmp, self.owner.dir_mode)
            self._own(tmp)
            if os.path.lexists(folder):  # made meanwhile (by vdsm): use that one
                tmp.rmdir()
                if not folder.is_dir():
                    raise OSError(errno.ENOTDIR, f"{folder} is not a folder")
                return
            os.rename(tmp, folder)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.rmdir()
            raise
        made.append(_Made("dir", folder))
        log.debug("made %s (%o, %d:%d)", folder, self.owner.dir_mode, self.owner.uid,
                  self.owner.gid)

    def _make_link(self, link: Path, target: str, made: list[_Made]) -> None:
        previous = None
        if link.is_symlink():
            previous = os.readlink(link)
            if previous == target:
                return
        elif os.path.lexists(link):
            raise OSError(errno.EEXIST, f"{link} exists and is not a link; not replacing it")
        self._place_link(link, target)
        made.append(_Made("link", link, previous))
        log.debug("linked %s -> %s%s", link, target,
                  f" (was -> {previous})" if previous is not None else "")

    def _place_link(self, link: Path, target: str) -> None:
        """Make or atomically replace a link, owned as configured from the start."""
        tmp = _tmp_name(link)
        _remove_tmp(tmp)
        os.symlink(target, tmp)
        try:
            self._own(tmp)
            # rename() never replaces a directory with a link (EISDIR): a folder that
            # appeared meanwhile stays, and this create fails and undoes itself.
            os.rename(tmp, link)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _write_record(self, volume: VolumeRef, link: Path, target: str,
                      made: list[_Made]) -> None:
        # Written before the link is made, so a crash in between leaves a note that teardown
        # checks against the link (absent: nothing to remove) instead of a link nobody
        # knows we made.
        record = self.record(volume)
        previous = os.readlink(link) if link.is_symlink() else None
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(record)
        tmp.write_text(json.dumps({"link": str(link), "target": target,
                                   "previous": previous}))
        os.replace(tmp, record)
        made.append(_Made("record", record))

    def _own(self, path: Path) -> None:
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (self.owner.uid, self.owner.gid):
            os.lchown(path, self.owner.uid, self.owner.gid)

    def _undo(self, made: list[_Made]) -> None:
        for step in reversed(made):
            try:
                if step.kind == "dir":
                    step.path.rmdir()  # only if still empty: someone else's entries stay
                elif step.kind == "record":
                    self._drop_record(step.path)
                elif step.previous is not None:
                    self._place_link(step.path, step.previous)
                else:
                    step.path.unlink()
            except OSError as e:
                log.warning("could not undo %s %s: %s", step.kind, step.path, e)

    # --- teardown --------------------------------------------------------------------

    def remove(self, volume: VolumeRef) -> None:
        """Remove what :meth:`create` made for the volume and no other volume needs."""
        with self._lock:
            try:
                self._remove(volume)
            except OSError as e:
                raise StorageError(f"cannot remove the links of volume {volume}: {e}") from e

    def _remove(self, volume: VolumeRef) -> None:
        _unlink(self.run_link(volume))
        run_image = self.run_image_dir(volume)
        if not run_image.is_symlink() and run_image.is_dir() and not any(run_image.iterdir()):
            run_image.rmdir()
            log.debug("removed %s", run_image)
        image = self.image_path(volume)
        if image.is_symlink() and os.readlink(image) == str(run_image) \
                and not os.path.lexists(run_image):
            _unlink(image)
        record = self.record(volume)
        note = _read_record(record)
        if note is None:
            return
        if _points_to(note.link, note.target):
            if note.previous is not None:
                self._place_link(note.link, note.previous)
                log.debug("restored %s -> %s", note.link, note.previous)
            else:
                _unlink(note.link)
        self._drop_record(record)

    def _drop_record(self, record: Path) -> None:
        record.unlink(missing_ok=True)
        folder = record.parent
        while folder != self.own_dir.parent and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


def resolve_legacy_path(path: str) -> Media:
    """A legacy ISO path must exist: a regular file opens as a file, a device as a block."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ImageFileNotFound(f"{path}: {e.strerror}") from None
    if stat.S_ISBLK(mode):
        return Media(path, DiskType.BLOCK)
    if stat.S_ISREG(mode):
        return Media(path, DiskType.FILE)
    raise ImageFileNotFound(f"{path}: not a file or block device")


def _points_to(link: Path, target: str) -> bool:
    return link.is_symlink() and os.readlink(link) == target


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{_TMP_SUFFIX}")


def _remove_tmp(tmp: Path) -> None:
    """A temporary entry a crashed create left (ours by its name)."""
    if tmp.is_symlink() or tmp.is_file():
        tmp.unlink()
    elif tmp.is_dir():
        tmp.rmdir()


def _read_record(record: Path) -> _Record | None:
    try:
        text = record.read_text()
    except FileNotFoundError:
        return None
    try:
        note = json.loads(text)
        link, target, previous = note["link"], note["target"], note["previous"]
        if isinstance(link, str) and isinstance(target, str) \
                and (previous is None or isinstance(previous, str)):
            return _Record(Path(link), target, previous)
    except (ValueError, TypeError, KeyError):
        pass
    raise OSError(errno.EINVAL, f"unreadable record {record}: {text[:200]!r}")


def _unlink(link: Path) -> None:
    if link.is_symlink():
        link.unlink()
        log.debug("removed %s", link)
