"""Fixtures for tests on a real host: libvirtd, QEMU VMs, loop devices.

Every test here is marked ``libvirt``. When libvirtd cannot be reached the tests are
skipped, except under ``CI=true``, where they fail: CI must prove the real thing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from needs import unavailable

if TYPE_CHECKING:
    from realvm import RealHost

LIBVIRT_URI_ENV = "OVIRT_CDROM_TEST_LIBVIRT_URI"

try:
    import libvirt

    if not hasattr(libvirt, "open"):
        # tests/ is on sys.path, so without libvirt-python this folder itself imports
        # as a namespace package named libvirt.
        raise ImportError("libvirt-python is not installed")
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    # Without libvirt-python there is nothing here to run (outside CI).
    collect_ignore_glob = ["test_*.py"]


def _unavailable(reason: str) -> None:
    unavailable(f"the real host is unusable: {reason}")


@pytest.fixture(scope="session")
def libvirt_uri() -> Iterator[str]:
    """A reachable libvirtd with QEMU, and root for loop devices."""
    uri = os.environ.get(LIBVIRT_URI_ENV, "qemu:///system")
    from realvm import remove_leftover_vms  # noqa: PLC0415 (needs libvirt-python)

    try:
        conn = libvirt.open(uri)
        conn.getVersion()
        conn.close()
    except libvirt.libvirtError as err:
        _unavailable(f"libvirtd unreachable at {uri}: {err}")
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        _unavailable("needs root and losetup for loop devices")
    yield uri
    remove_leftover_vms(uri)


@pytest.fixture
def real_host(libvirt_uri: str) -> Iterator[RealHost]:
    from realvm import RealHost  # noqa: PLC0415 (needs libvirt-python)

    host = RealHost(libvirt_uri)
    try:
        yield host
    finally:
        host.cleanup()


@pytest.fixture(scope="module")
def module_host(libvirt_uri: str) -> Iterator[RealHost]:
    """One real host for a whole module: destroying a QEMU VM takes about a second, so
    modules that only need a VM in a known state reuse theirs and reset it per test."""
    from realvm import RealHost  # noqa: PLC0415 (needs libvirt-python)

    host = RealHost(libvirt_uri)
    try:
        yield host
    finally:
        host.cleanup()
