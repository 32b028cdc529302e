"""The Hypervisor and MetadataRepository contracts, over the in-memory host and real libvirt."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator

import pytest
from contracts.hypervisor import SDC, HypervisorContract, HypervisorEnv
from contracts.metadata import MetadataContract, MetadataEnv
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.libvirt import (
    LibvirtConnection,
    LibvirtHypervisor,
    LibvirtMetadataRepository,
)
from ovirt_cdrom.adapters.memory import MemoryHost, MemoryHypervisor, MemoryMetadataRepository
from ovirt_cdrom.domain.model import DiskType, Media, VmId, VolumeRef, block_volume_path
from realvm import RUN_ID, UNRELATED_METADATA, RealHost

ADAPTERS = [pytest.param("memory"), pytest.param("libvirt", marks=pytest.mark.libvirt)]


def _new_vm() -> VmId:
    return VmId(str(uuid.uuid4()))


def _memory_volume(n: int) -> VolumeRef:
    return VolumeRef(*(str(uuid.uuid5(uuid.NAMESPACE_OID, f"hv-{k}-{n}"))
                       for k in ("pool", "domain", "image", "volume")))


# --- Hypervisor ---------------------------------------------------------------------------


def memory_hv_env() -> HypervisorEnv:
    host = MemoryHost()
    vm = _new_vm()
    host.add_vm(vm)
    host.add_drive(vm, "sata", 2)

    def block_media(n: int) -> Media:
        volume = _memory_volume(n)
        host.add_volume(volume, active=True)
        return Media(block_volume_path(volume), DiskType.BLOCK)

    return HypervisorEnv(MemoryHypervisor(host), vm, block_media,
                         lambda n: Media(f"/iso/file-{n}.iso", DiskType.FILE),
                         Media("/dev/ovirt-cdrom-missing", DiskType.BLOCK))


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
        device = real.attach_loop(real.add_file(f"block-{n}.iso"))
        loops.append(device)
        return Media(device, DiskType.BLOCK)

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


def memory_md_env() -> MetadataEnv:
    host = MemoryHost()
    vm, bare = _new_vm(), _new_vm()
    host.add_vm(vm, metadata=UNRELATED_METADATA)
    host.add_vm(bare)

    def seed(target: VmId, text: str) -> None:
        host.vm(target).metadata = metadata_xml.parse_block(text)

    return MetadataEnv(MemoryMetadataRepository(host),
                       lambda enc: MemoryMetadataRepository(host, enc), vm, bare,
                       lambda target: host.vm(target).metadata, seed)


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
