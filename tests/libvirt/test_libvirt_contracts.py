"""The Hypervisor and MetadataRepository contracts, over the in-memory host and real libvirt."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from contracts.hypervisor import SDC, HypervisorContract, HypervisorEnv, memory_hv_env, volume
from contracts.metadata import MetadataContract, MetadataEnv, memory_md_env
from ovirt_cdrom.adapters.libvirt import (
    LibvirtConnection,
    LibvirtHypervisor,
    LibvirtMetadataRepository,
)
from ovirt_cdrom.adapters.vdsm_layout import block_path
from ovirt_cdrom.domain.model import DiskType, Media, VmId
from realvm import RUN_ID, UNRELATED_METADATA, RealHost

ADAPTERS = [pytest.param("memory"), pytest.param("libvirt", marks=pytest.mark.libvirt)]


# --- Hypervisor ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_vms(module_host: RealHost) -> dict[str, VmId]:
    """VMs reused by the module's libvirt tests (reset after each test)."""
    return {"hv": module_host.create_vm(),
            # The seeded VM is persistent (live and config written), the bare one transient.
            "md": module_host.create_vm(persistent=True, metadata=UNRELATED_METADATA),
            "bare": module_host.create_vm()}


def libvirt_hv_env(real: RealHost, vm: VmId, loops: list[str]) -> HypervisorEnv:
    @functools.cache
    def block_media(n: int) -> Media:
        """A loop device exposed where vdsm exposes volume(n), under the host's root."""
        device = real.attach_loop(real.add_file(f"block-{n}.iso"))
        loops.append(device)
        link = real.base / block_path(volume(n)).lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)  # an earlier test's, to a device since detached
        link.symlink_to(device)
        return Media(str(link), DiskType.BLOCK)

    @functools.cache
    def file_media(n: int) -> Media:
        return Media(str(real.add_file(f"file-{n}.iso")), DiskType.FILE)

    hv = LibvirtHypervisor(LibvirtConnection(real.uri))
    return HypervisorEnv(hv, vm, block_media, file_media,
                         Media(f"/dev/ovirt-cdrom-missing-{RUN_ID}", DiskType.BLOCK))


@pytest.fixture(params=ADAPTERS)
def hv_env(request: pytest.FixtureRequest) -> Iterator[HypervisorEnv]:
    if request.param == "memory":
        yield memory_hv_env()
        return
    real: RealHost = request.getfixturevalue("module_host")
    vm = request.getfixturevalue("shared_vms")["hv"]
    loops: list[str] = []
    env = libvirt_hv_env(real, vm, loops)
    try:
        yield env
    finally:
        env.hypervisor.eject(vm, SDC)
        real.detach_loops(loops)


class TestHypervisorContract(HypervisorContract):
    pass


# --- MetadataRepository -------------------------------------------------------------------


def libvirt_md_env(real: RealHost, vms: dict[str, VmId]) -> MetadataEnv:
    connection = LibvirtConnection(real.uri)
    repo = LibvirtMetadataRepository(connection)
    return MetadataEnv(repo, lambda enc: LibvirtMetadataRepository(connection, enc),
                       vms["md"], vms["bare"], repo.read_block, real.set_metadata)


@pytest.fixture(params=ADAPTERS)
def md_env(request: pytest.FixtureRequest) -> Iterator[MetadataEnv]:
    if request.param == "memory":
        yield memory_md_env()
        return
    real: RealHost = request.getfixturevalue("module_host")
    vms = request.getfixturevalue("shared_vms")
    try:
        yield libvirt_md_env(real, vms)
    finally:
        real.set_metadata(vms["md"], UNRELATED_METADATA)
        real.set_metadata(vms["bare"], None)


class TestMetadataContract(MetadataContract):
    pass
