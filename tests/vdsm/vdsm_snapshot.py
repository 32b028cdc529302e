"""vdsm's own source, from the snapshot beside the repository, for tests that run its code.

CI clones the repository with ``shared/`` beside it; ``shared/vdsm/`` holds a ``git
archive`` of vdsm (``vdsm-*.tar.gz``). ``OVIRT_CDROM_VDSM_SNAPSHOT`` names another tarball.
Only vdsm's Python package (``lib/vdsm``) is unpacked: its metadata module needs nothing
else but libvirt-python.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT_ENV = "OVIRT_CDROM_VDSM_SNAPSHOT"


def snapshot() -> Path | None:
    """The vdsm snapshot tarball, or None when there is none."""
    named = os.environ.get(SNAPSHOT_ENV)
    if named:
        return Path(named)
    found = sorted((ROOT.parent / "shared" / "vdsm").glob("vdsm-*.tar.gz"))
    return found[-1] if found else None


def unpack_lib(tarball: Path, into: Path) -> Path:
    """Unpack vdsm's ``lib/`` folder of ``tarball`` under ``into``; return that folder."""
    with tarfile.open(tarball) as archive:
        members = [m for m in archive.getmembers()
                   if "/lib/vdsm/" in f"/{m.name}" and (m.isfile() or m.isdir())]
        if not members:
            raise FileNotFoundError(f"{tarball} holds no lib/vdsm/")
        archive.extractall(into, members=members, filter="data")
    (lib,) = {Path(m.name).parts[: Path(m.name).parts.index("lib") + 1] for m in members}
    return into.joinpath(*lib)
