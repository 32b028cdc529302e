"""The LVM activator on a host whose LVM configuration hides the storage domain (root only).

On an oVirt host with vdsm 4.50, ``vdsm-tool config-lvm-filter`` leaves LVM a devices file
(``/etc/lvm/devices/system.devices``) that lists the host's own disks only, or, on older
setups, an ``lvm.conf`` filter doing the same: storage domains are hidden on purpose, and
vdsm names the devices on every command. Here the host's configuration is a test folder
(``LVM_SYSTEM_DIR``) that lists only another loop device ("the host's disk"); the domain is
a VG on its own loop device with LVs made metadata-only (``--driverloaded n``), as the SPM
would make them. The activator is built by the container as a host gets it, and its
runner records what ran.

Without device-mapper LVM cannot activate anything; what it answers still shows whether it
saw the domain: "Volume group ... not found" when it did not, a device-mapper failure when
it found the LV and went to activate it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from ovirt_cdrom.adapters.lvm import LvmVolumeActivator
from ovirt_cdrom.adapters.runner import CommandRunner, CompletedCommand
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.errors import StorageError
from ovirt_cdrom.domain.model import DiskType

from .realdev import LvmDomain, attach_loop, device_mapper_unavailable, lvm_listing, require_lvm

pytestmark = pytest.mark.root

HOST_CONFIGS = ["devices-file", "filter", "global-filter"]
NOT_SEEN = ("not found", "Cannot process volume group", "Couldn't find device",
            "partial LV")


class Recording(CommandRunner):
    """Runs commands for real, keeping each result."""

    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner
        self.results: list[CompletedCommand] = []

    def run(self, argv: Sequence[str]) -> CompletedCommand:
        result = self.runner.run(argv)
        self.results.append(result)
        return result

    def commands(self, name: str) -> list[CompletedCommand]:
        return [r for r in self.results if r.argv[1] == name]


@dataclass
class Host:
    """The host: its LVM configuration folder, its own disk, and the activator on it."""

    lvm_dir: Path
    disk: str
    run_root: Path
    activator: LvmVolumeActivator
    runner: Recording

    def config_files(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.lvm_dir)): p.read_bytes()
                for p in sorted(self.lvm_dir.rglob("*")) if p.is_file()}

    def plain_lvm(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An LVM command as the host's own configuration runs it."""
        return subprocess.run(["lvm", *args], capture_output=True, text=True, check=False,
                              env={**os.environ, "LC_ALL": "C"})


def _write_host_config(folder: Path, kind: str, disk: str) -> None:
    folder.mkdir()
    if kind == "devices-file":
        (folder / "lvm.conf").write_text("devices {\n  use_devicesfile = 1\n}\n")
        # LVM writes the devices file itself, as config-lvm-filter has it do.
        subprocess.run(["lvm", "lvmdevices", "--yes", "--adddev", disk], check=True,
                       capture_output=True, env={**os.environ, "LVM_SYSTEM_DIR": str(folder)})
        assert disk in (folder / "devices" / "system.devices").read_text()
    else:
        key = "filter" if kind == "filter" else "global_filter"
        (folder / "lvm.conf").write_text(
            f'devices {{\n  use_devicesfile = 0\n  {key} = [ "a|^{disk}$|", "r|.*|" ]\n}}\n')


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    require_lvm()
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def domain_pv(stack: ExitStack, tmp_path: Path) -> str:
    return attach_loop(stack, tmp_path / "lun-a.img")


@pytest.fixture
def domain(stack: ExitStack, domain_pv: str) -> LvmDomain:
    return LvmDomain(stack, [domain_pv])


def _host(stack: ExitStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
          search: list[str]) -> Host:
    disk = attach_loop(stack, tmp_path / "host-disk.img")
    lvm_dir = tmp_path / "etc-lvm"
    _write_host_config(lvm_dir, kind, disk)
    monkeypatch.setenv("LVM_SYSTEM_DIR", str(lvm_dir))
    run_root = tmp_path / "host"
    run_root.mkdir()
    # As a host configures it: the activator's runner inherits LVM_SYSTEM_DIR.
    app = build({"activation": "lvm", "run_root": str(run_root),
                 "lvm_devices": ",".join([*search, disk])}, environ={})
    activator = app.libvirt.volumes()
    assert isinstance(activator, LvmVolumeActivator)
    runner = Recording(activator.runner)
    activator.runner = runner
    return Host(lvm_dir, disk, run_root, activator, runner)


@pytest.fixture(params=HOST_CONFIGS)
def host(request: pytest.FixtureRequest, stack: ExitStack, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch, domain: LvmDomain) -> Iterator[Host]:
    host = _host(stack, tmp_path, monkeypatch, request.param, domain.pvs)
    hidden = host.plain_lvm("vgs", domain.sd)
    assert hidden.returncode != 0 and "not found" in hidden.stderr, \
        f"the host configuration does not hide the domain: {hidden.stderr}"
    before = host.config_files()
    yield host
    assert host.config_files() == before, "the host's LVM configuration was changed"


def _saw_the_domain(results: list[CompletedCommand]) -> None:
    for result in results:
        assert not any(s in result.stderr for s in NOT_SEEN), \
            f"LVM did not see the domain: {' '.join(result.argv[:4])}: {result.stderr}"


def _devices(result: CompletedCommand) -> str:
    return result.argv[result.argv.index("--devices") + 1]


def test_the_domain_and_its_iso_volume_are_found(host: Host, domain: LvmDomain,
                                                domain_pv: str) -> None:
    iso = domain.add_volume()
    other = domain.add_volume()

    found = lvm_listing(host.activator, domain.sd)

    assert set(found) == {iso.volume_id, other.volume_id}
    assert f"IU_{iso.image_id}" in found[iso.volume_id]
    # Learned on the search devices, then confined to the domain's PV.
    vgs, lvs = host.runner.results
    assert (vgs.argv[1], _devices(vgs)) == ("vgs", ",".join(sorted([domain_pv, host.disk])))
    assert (lvs.argv[1], _devices(lvs)) == ("lvs", domain_pv)
    assert f'filter=["a|^{domain_pv}$|", "r|.*|"]' in lvs.argv[lvs.argv.index("--config") + 1]
    _saw_the_domain(host.runner.results)


def test_prepare_of_an_inactive_volume_reaches_activation(host: Host, domain: LvmDomain,
                                                          domain_pv: str) -> None:
    iso = domain.add_volume()
    lv = f"{domain.sd}/{iso.volume_id}"
    activate = ("--autobackup", "n", "--available", "y", lv)

    if device_mapper_unavailable() is None:  # the real thing, where it can run
        media = host.activator.prepare(iso)
        assert media.disk_type is DiskType.BLOCK and host.activator.is_active(iso)
        host.activator.teardown(iso)
        assert not host.activator.is_active(iso)
        return
    with pytest.raises(StorageError, match="device-mapper") as info:
        host.activator.prepare(iso)

    assert type(info.value) is StorageError
    first, *retry = host.runner.commands("lvchange")
    assert _devices(first) == domain_pv
    assert first.argv[first.argv.index("--config") + 2:] == activate
    # A failure is retried once on the search devices, as vdsm retries; both saw the LV.
    assert [(_devices(r), r.argv[-5:]) for r in retry] == [
        (",".join(sorted([domain_pv, host.disk])), activate)]
    _saw_the_domain(host.runner.results)
    assert not host.activator.is_active(iso)
    assert not (host.run_root / "run").exists() and not (host.run_root / "rhev").exists()


def test_prepare_of_an_active_volume_refreshes_it(host: Host, domain: LvmDomain,
                                                  domain_pv: str) -> None:
    iso = domain.add_volume()
    # Active, as LVM and vdsm tell it: the LV's node exists (made here, under run_root).
    node = host.activator.device_path(iso)
    node.parent.mkdir(parents=True)
    node.touch()

    try:
        host.activator.prepare(iso)
    except StorageError as e:
        assert device_mapper_unavailable() is not None, e  # LVM could not suspend it
        assert "Failed to suspend" in str(e)

    first = host.runner.commands("lvchange")[0]
    assert _devices(first) == domain_pv
    assert first.argv[-2:] == ("--refresh", f"{domain.sd}/{iso.volume_id}")
    assert not any("--available" in r.argv for r in host.runner.commands("lvchange"))
    _saw_the_domain(host.runner.results)
    assert node.exists()  # it was active before: a failed prepare leaves it so


def test_teardown_reaches_lvm(host: Host, domain: LvmDomain, domain_pv: str) -> None:
    iso = domain.add_volume()

    host.activator.teardown(iso)  # inactive: LVM deactivates nothing and says so with 0

    (deactivate,) = host.runner.commands("lvchange")
    assert _devices(deactivate) == domain_pv
    assert deactivate.argv[-5:] == ("--autobackup", "n", "--available", "n",
                                    f"{domain.sd}/{iso.volume_id}")
    _saw_the_domain(host.runner.results)


def test_a_stale_device_list_is_retried_on_the_search_devices(
        stack: ExitStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        domain: LvmDomain, domain_pv: str) -> None:
    new_lun = attach_loop(stack, tmp_path / "lun-b.img")
    host = _host(stack, tmp_path, monkeypatch, "devices-file", [domain_pv, new_lun])
    old = domain.add_volume()
    assert list(lvm_listing(host.activator, domain.sd)) == [old.volume_id]
    # Meanwhile the SPM extends the domain onto a new LUN and makes an ISO volume there.
    domain.extend(new_lun)
    iso = domain.add_volume(new_lun)
    host.runner.results.clear()

    try:
        host.activator.prepare(iso)
    except StorageError as e:
        assert device_mapper_unavailable() is not None, e

    narrow, wide = host.runner.commands("lvchange")
    assert _devices(narrow) == domain_pv  # what it learned before the domain grew
    assert "Refusing activation of partial LV" in narrow.stderr
    assert _devices(wide) == ",".join(sorted([domain_pv, new_lun, host.disk]))
    assert wide.argv[-5:] == narrow.argv[-5:]
    _saw_the_domain([wide])
    # And the next command learns the domain's devices again, both LUNs now.
    host.runner.results.clear()
    host.activator.teardown(iso)
    vgs, deactivate = host.runner.results
    assert vgs.argv[1] == "vgs"
    assert _devices(deactivate) == ",".join(sorted([domain_pv, new_lun]))
    _saw_the_domain(host.runner.results)
