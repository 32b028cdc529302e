"""LVM command lines, device selection and error mapping, through a recording runner."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from ovirt_cdrom.adapters.lvm import (
    LvmVolumeActivator,
    is_in_use,
    lvm_config,
    multipath_devices,
)
from ovirt_cdrom.adapters.runner import CommandError, RecordingRunner, SubprocessRunner
from ovirt_cdrom.adapters.vdsm_layout import tray_of
from ovirt_cdrom.domain.errors import (
    ImageFileNotFound,
    StorageError,
    VolumeInUse,
    VolumeNotFound,
)
from ovirt_cdrom.domain.model import DiskType, VolumeRef
from rig import uid, volume

VOLUME = volume("iso")
SD, IMG, VOL = VOLUME.domain_id, VOLUME.image_id, VOLUME.volume_id
LV = f"{SD}/{VOL}"
PVS = ("/dev/mapper/36001405a", "/dev/mapper/36001405b")

IN_USE = f"  Logical volume {LV} in use.\n"
NOT_FOUND = f'  Failed to find logical volume "{LV}"\n'
NO_VG = f'  Volume group "{SD}" not found\n  Cannot process volume group {SD}\n'


@pytest.fixture
def runner() -> RecordingRunner:
    return RecordingRunner()


@pytest.fixture
def activator(tmp_path: Path, runner: RecordingRunner) -> LvmVolumeActivator:
    return LvmVolumeActivator(root=tmp_path, runner=runner, lvm="/sbin/lvm",
                              devices={SD: PVS}, multipath=False)


def _on(devices: tuple[str, ...], command: str, *args: str) -> tuple[str, ...]:
    """The argv of ``lvm <command>`` seeing ``devices`` only."""
    return ("/sbin/lvm", command, "--devices", ",".join(devices), "--config",
            lvm_config(devices), *args)


def _activate_lv(root: Path) -> Path:
    """What LVM leaves behind an active LV: its /dev/<vg>/<lv> node."""
    node = root / "dev" / SD / VOL
    node.parent.mkdir(parents=True, exist_ok=True)
    node.touch()
    return node


# --- command lines -------------------------------------------------------------------


def test_prepare_activates_with_vdsm_command_shape(
        activator: LvmVolumeActivator, runner: RecordingRunner) -> None:
    activator.prepare(VOLUME)

    assert runner.calls == [_on(PVS, "lvchange", "--autobackup", "n", "--available", "y", LV)]


def test_prepare_refreshes_an_active_volume(
        tmp_path: Path, activator: LvmVolumeActivator, runner: RecordingRunner) -> None:
    _activate_lv(tmp_path)

    activator.prepare(VOLUME)

    assert runner.calls == [_on(PVS, "lvchange", "--refresh", LV)]


def test_teardown_deactivates(activator: LvmVolumeActivator, runner: RecordingRunner) -> None:
    activator.teardown(VOLUME)

    assert runner.calls == [_on(PVS, "lvchange", "--autobackup", "n", "--available", "n", LV)]


def test_config_confines_lvm_to_the_domain_devices() -> None:
    conf = lvm_config(PVS)

    # vdsm's filter format (config_method=filter): one accept regex, then reject the rest.
    assert 'filter=["a|^/dev/mapper/36001405a$|^/dev/mapper/36001405b$|", "r|.*|"]' in conf
    assert "\n" not in conf
    for setting in ('preferred_names=["^/dev/mapper/"]', "ignore_suspended_devices=1",
                    "write_cache_state=0", "disable_after_error_count=3", 'hints="none"',
                    "obtain_device_list_from_udev=0", "prioritise_write_locks=1",
                    "wait_for_locks=1", "use_lvmpolld=1", "retain_min=50", "retain_days=0"):
        assert setting in conf
    assert conf.startswith("devices {") and " global { " in conf and " backup { " in conf


def test_devices_of_another_domain_do_not_leak_into_the_selection(tmp_path: Path) -> None:
    runner = RecordingRunner()
    activator = LvmVolumeActivator(root=tmp_path, runner=runner, multipath=False,
                                   devices={"other-vg": ["/dev/sdz"], SD: PVS})
    activator.teardown(VOLUME)

    assert not any("/dev/sdz" in arg for argv in runner.calls for arg in argv)


@pytest.mark.parametrize("device", ['/dev/sd"a', "/dev/sd|a", "sda", "/dev/sd a", "/dev/sd$",
                                    "/dev/sda,/dev/sdb"])
def test_unsafe_device_paths_are_refused(tmp_path: Path, device: str) -> None:
    with pytest.raises(ValueError, match="unsupported device path"):
        LvmVolumeActivator(root=tmp_path, devices={SD: [device]})
    with pytest.raises(ValueError, match="unsupported device path"):
        LvmVolumeActivator(root=tmp_path, search_devices=[device])


def test_a_pinned_group_without_devices_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one device"):
        LvmVolumeActivator(root=tmp_path, devices={SD: []})


# --- links ---------------------------------------------------------------------------


def test_prepare_links_the_volume_as_vdsm_does(
        tmp_path: Path, activator: LvmVolumeActivator) -> None:
    media = activator.prepare(VOLUME)

    run_dir = tmp_path / "run/vdsm/storage" / SD / IMG
    image_link = tmp_path / "rhev/data-center/mnt/blockSD" / SD / "images" / IMG
    assert os.readlink(run_dir / VOL) == str(tmp_path / "dev" / SD / VOL)
    assert os.readlink(image_link) == str(run_dir)
    assert media.path == str(image_link / VOL)
    assert media.disk_type is DiskType.BLOCK
    assert VOLUME.in_tray(tray_of(media.path))
    node = _activate_lv(tmp_path)
    assert os.path.realpath(media.path) == str(node)


def test_teardown_removes_the_links(tmp_path: Path, activator: LvmVolumeActivator) -> None:
    media = activator.prepare(VOLUME)

    activator.teardown(VOLUME)

    assert not os.path.lexists(media.path)
    assert not os.path.lexists(Path(media.path).parent)
    assert not (tmp_path / "run/vdsm/storage" / SD / IMG).exists()


def test_teardown_keeps_the_image_link_while_another_volume_of_it_is_linked(
        tmp_path: Path, activator: LvmVolumeActivator) -> None:
    sibling = VolumeRef(VOLUME.pool_id, SD, IMG, uid("volume", "sibling"))
    activator.prepare(VOLUME)
    sibling_media = activator.prepare(sibling)

    activator.teardown(VOLUME)

    assert os.path.lexists(sibling_media.path)
    assert not os.path.lexists(tmp_path / "run/vdsm/storage" / SD / IMG / VOL)


# --- errors --------------------------------------------------------------------------


def test_teardown_in_use_raises_volume_in_use_and_keeps_links(
        activator: LvmVolumeActivator, runner: RecordingRunner) -> None:
    media = activator.prepare(VOLUME)
    runner.answer(5, stderr=IN_USE, when="lvchange")

    with pytest.raises(VolumeInUse, match="in use"):
        activator.teardown(VOLUME)

    assert os.path.lexists(media.path)


@pytest.mark.parametrize("stderr", [NOT_FOUND, NO_VG], ids=["no-lv", "no-vg"])
@pytest.mark.parametrize("operation", ["prepare", "teardown"])
def test_missing_volume_raises_volume_not_found(
        activator: LvmVolumeActivator, runner: RecordingRunner, stderr: str,
        operation: str) -> None:
    runner.answer(5, stderr=stderr)

    with pytest.raises(VolumeNotFound):
        getattr(activator, operation)(VOLUME)


def test_other_failure_raises_storage_error_with_stderr(
        tmp_path: Path, activator: LvmVolumeActivator, runner: RecordingRunner) -> None:
    runner.answer(5, stderr="  /dev/mapper/control: open failed: No such device\n"
                            "  Failure to communicate with kernel device-mapper driver.\n")

    with pytest.raises(StorageError, match="device-mapper driver") as info:
        activator.prepare(VOLUME)

    assert type(info.value) is StorageError
    assert "rc=5" in str(info.value)
    assert not (tmp_path / "run").exists()  # no links for a volume that is not active


def test_a_command_that_cannot_run_raises_storage_error(tmp_path: Path) -> None:
    activator = LvmVolumeActivator(root=tmp_path, lvm=str(tmp_path / "no-such-lvm"),
                                   devices={SD: PVS})

    with pytest.raises(StorageError, match="no-such-lvm"):
        activator.prepare(VOLUME)


@pytest.mark.parametrize(("stderr", "expected"), [
    (f"  Logical volume {LV} in use.", True),
    (f"Logical volume {LV} in use", True),
    (f"  WARNING: something\n  Logical volume {LV} in use.\n", True),
    (f"  Logical volume {LV} contains a filesystem in use.", False),
    (f"  Logical volume {LV} in use by another host.", False),
    ("  Logical volume  in use.", False),
    (NOT_FOUND, False),
    ("", False),
], ids=["vdsm", "no-dot", "after-warning", "filesystem", "other-host", "no-name",
        "not-found", "empty"])
def test_in_use_is_recognised_per_line(stderr: str, expected: bool) -> None:
    assert is_in_use(stderr) is expected


def test_resolve_path(tmp_path: Path, activator: LvmVolumeActivator) -> None:
    iso = tmp_path / "x.iso"
    iso.write_bytes(b"iso")

    assert activator.resolve_path(str(iso)).disk_type is DiskType.FILE
    with pytest.raises(ImageFileNotFound):
        activator.resolve_path(str(tmp_path / "missing.iso"))
    with pytest.raises(ImageFileNotFound):
        activator.resolve_path(str(tmp_path))  # a folder is no ISO


# --- which devices LVM sees ----------------------------------------------------------

SEARCH = ("/dev/mapper/36001405a", "/dev/mapper/36001405b", "/dev/mapper/36001405c")
VGS_PVS = f"  {SD}|/dev/mapper/36001405b\n  {SD}|/dev/mapper/36001405a\n"


def _learning(tmp_path: Path, runner: RecordingRunner) -> LvmVolumeActivator:
    """An activator that learns the domain's PVs, searching SEARCH (multipath off)."""
    return LvmVolumeActivator(root=tmp_path, runner=runner, lvm="/sbin/lvm",
                              search_devices=SEARCH, multipath=False)


def _vgs(devices: tuple[str, ...]) -> tuple[str, ...]:
    return _on(devices, "vgs", "--noheadings", "--units", "b", "--nosuffix", "--separator",
               "|", "--ignoreskippedcluster", "-o", "vg_name,pv_name", SD)


ACTIVATE = ("lvchange", "--autobackup", "n", "--available", "y", LV)
DEACTIVATE = ("lvchange", "--autobackup", "n", "--available", "n", LV)


def test_the_domain_devices_are_learned_once_on_the_search_devices(
        tmp_path: Path, runner: RecordingRunner) -> None:
    runner.answer(stdout=VGS_PVS, when="vgs")
    activator = _learning(tmp_path, runner)

    activator.prepare(VOLUME)
    activator.teardown(VOLUME)

    assert runner.calls == [_vgs(SEARCH), _on(PVS, *ACTIVATE), _on(PVS, *DEACTIVATE)]


def test_a_command_failing_on_the_domain_devices_is_retried_once_on_the_search_devices(
        tmp_path: Path, runner: RecordingRunner) -> None:
    # The domain grew onto a LUN our list lacks: LVM sees a partial group.
    runner.answer(stdout=VGS_PVS, when="vgs")
    runner.answer(5, stderr="  Refusing activation of partial LV x. Use '--activationmode "
                            "partial' to override.\n", when="lvchange")
    activator = _learning(tmp_path, runner)

    activator.prepare(VOLUME)

    assert runner.calls == [_vgs(SEARCH), _on(PVS, *ACTIVATE), _on(SEARCH, *ACTIVATE)]


def test_after_a_retry_the_domain_devices_are_learned_again(
        tmp_path: Path, runner: RecordingRunner) -> None:
    runner.answer(stdout=VGS_PVS, when="vgs", times=2)
    runner.answer(5, stderr=NO_VG, when="lvchange")
    activator = _learning(tmp_path, runner)
    activator.prepare(VOLUME)

    activator.teardown(VOLUME)

    assert runner.calls[3:] == [_vgs(SEARCH), _on(PVS, *DEACTIVATE)]


def test_a_failure_on_the_search_devices_too_reports_the_second_answer(
        tmp_path: Path, runner: RecordingRunner) -> None:
    runner.answer(stdout=VGS_PVS, when="vgs")
    runner.answer(5, stderr="  something stale\n", when="lvchange")
    runner.answer(5, stderr=NOT_FOUND, when="lvchange")

    with pytest.raises(VolumeNotFound, match="Failed to find logical volume"):
        _learning(tmp_path, runner).prepare(VOLUME)

    assert len(runner.commands("lvchange")) == 2
    assert not (tmp_path / "run").exists()


def test_in_use_is_not_retried(tmp_path: Path, runner: RecordingRunner) -> None:
    runner.answer(stdout=VGS_PVS, when="vgs")
    runner.answer(5, stderr=IN_USE, when="lvchange")

    with pytest.raises(VolumeInUse):
        _learning(tmp_path, runner).teardown(VOLUME)

    assert runner.calls == [_vgs(SEARCH), _on(PVS, *DEACTIVATE)]


def test_a_group_on_none_of_the_search_devices_is_not_found_without_a_retry(
        tmp_path: Path, runner: RecordingRunner) -> None:
    runner.answer(5, stderr=NO_VG, times=None)

    with pytest.raises(VolumeNotFound):
        _learning(tmp_path, runner).teardown(VOLUME)

    # Learning failed, so the command ran on the search devices; nothing wider to retry on.
    assert runner.calls == [_vgs(SEARCH), _on(SEARCH, *DEACTIVATE)]


def test_without_any_device_to_search_the_error_is_no_volume_not_found(
        tmp_path: Path, runner: RecordingRunner) -> None:
    # "Not found" would let the core count a teardown as done (D18) while the LV may well
    # be active on devices we never looked at.
    activator = LvmVolumeActivator(root=tmp_path, runner=runner, multipath=False)

    with pytest.raises(StorageError, match="no devices to look for volume group") as info:
        activator.teardown(VOLUME)

    assert type(info.value) is StorageError
    assert runner.calls == []


def test_unknown_and_unsafe_physical_volumes_from_vgs_are_not_learned(
        tmp_path: Path, runner: RecordingRunner) -> None:
    runner.answer(stdout=f"  {SD}|[unknown]\n  {SD}|/dev/mapper/36001405a\n", when="vgs")
    runner.answer(stdout=f"  {SD}|/dev/odd name\n", when="vgs")
    activator = _learning(tmp_path, runner)

    assert activator.devices_of(SD) == ("/dev/mapper/36001405a",)
    activator.forget(SD)
    assert activator.devices_of(SD) == SEARCH


def test_multipath_devices_are_read_from_sysfs(tmp_path: Path) -> None:
    def dm(n: int, uuid: str, name: str) -> None:
        folder = tmp_path / f"dm-{n}" / "dm"
        folder.mkdir(parents=True)
        (folder / "uuid").write_text(uuid + "\n")
        (folder / "name").write_text(name + "\n")

    dm(0, "mpath-36001405a", "36001405a")
    dm(1, "LVM-abcdef", "vg-lv")  # an LV, not a multipath device
    dm(2, "mpath-36001405b", "36001405b")
    dm(3, "mpath-x", "bad name")
    (tmp_path / "sda").mkdir()

    assert multipath_devices(tmp_path) == ["/dev/mapper/36001405a", "/dev/mapper/36001405b"]
    activator = LvmVolumeActivator(root=tmp_path, sys_block=tmp_path,
                                   search_devices=["/dev/loop7"])
    assert activator.search_devices() == ("/dev/loop7", "/dev/mapper/36001405a",
                                          "/dev/mapper/36001405b")


# --- next to vdsm --------------------------------------------------------------------

# Recorded from vdsm 4.50.7-31-gfd4b0df20's lib/vdsm/storage/lvm.py (config_method=devices,
# its default), run with a recording LVMRunner; see tests/storage/vdsm_lvm_argv.py.
VDSM_CONFIG = ('devices {  preferred_names=["^/dev/mapper/"]  ignore_suspended_devices=1  '
               'write_cache_state=0  disable_after_error_count=3    hints="none"  '
               'obtain_device_list_from_udev=0 } global {  prioritise_write_locks=1  '
               'wait_for_locks=1  use_lvmpolld=1 } backup {  retain_min=50  retain_days=0 }')
VDSM_ARGV = {
    "activate": ["lvchange", "--autobackup", "n", "--available", "y", LV],
    "refresh": ["lvchange", "--refresh", LV],
    "deactivate": ["lvchange", "--autobackup", "n", "--available", "n", LV],
}


def _without_filter(argv: tuple[str, ...]) -> list[str]:
    """Our argv with vdsm's spacing and without the filter we add to vdsm's settings."""
    conf = argv.index("--config") + 1
    text = re.sub(r'filter=\[[^]]*\]', "", argv[conf])
    return [*argv[:conf], " ".join(text.split()), *argv[conf + 1:]]


@pytest.mark.parametrize("operation", VDSM_ARGV)
def test_lvchange_is_vdsm_argv_plus_a_filter(tmp_path: Path, activator: LvmVolumeActivator,
                                             runner: RecordingRunner, operation: str) -> None:
    if operation == "refresh":
        _activate_lv(tmp_path)
    getattr(activator, "teardown" if operation == "deactivate" else "prepare")(VOLUME)

    vdsm = ["/sbin/lvm", VDSM_ARGV[operation][0], "--devices", ",".join(PVS), "--config",
            " ".join(VDSM_CONFIG.split()), *VDSM_ARGV[operation][1:]]
    assert _without_filter(runner.calls[0]) == vdsm


# --- the runner itself ---------------------------------------------------------------


def test_subprocess_runner_reports_exit_status_and_output() -> None:
    result = SubprocessRunner().run(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); "
                               "sys.exit(3)"])

    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok


def test_subprocess_runner_passes_arguments_verbatim() -> None:
    odd = "a b; $(touch /tmp/never) | 'q'"
    result = SubprocessRunner().run([sys.executable, "-c", "import sys; print(sys.argv[1])", odd])

    assert result.stdout == odd + "\n"


def test_subprocess_runner_times_out() -> None:
    with pytest.raises(CommandError, match="timed out"):
        SubprocessRunner(timeout=0.2).run([sys.executable, "-c", "import time; time.sleep(5)"])


def test_recording_runner_answers_in_order_then_succeeds() -> None:
    runner = RecordingRunner()
    runner.answer(1, stderr="first", when="x").answer(2, when=lambda argv: argv[0] == "y")

    results = [runner.run(argv) for argv in (["x"], ["y"], ["x"])]

    assert [r.returncode for r in results] == [1, 2, 0]
    assert runner.calls == [("x",), ("y",), ("x",)]


def test_strict_recording_runner_refuses_unscripted_commands() -> None:
    with pytest.raises(AssertionError, match="unexpected command"):
        RecordingRunner(strict=True).run(["lvm"])
