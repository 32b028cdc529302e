"""Who owns what we make at vdsm's paths, and the configuration that says so."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from ovirt_cdrom.adapters.blocklinks import BlockLinks, Ownership
from ovirt_cdrom.container import load_config
from rig import volume

VOLUME = volume("iso")


def test_ownership_names_and_numbers() -> None:
    nobody = Ownership.resolve("nobody", "nogroup")
    assert (nobody.uid, nobody.gid) == (65534, 65534)
    assert Ownership.resolve("36", 36, 0o750) == Ownership(36, 36, 0o750)
    assert Ownership.resolve(36, "nogroup").gid == 65534


def test_ownership_falls_back_to_the_running_user_without_a_vdsm_user() -> None:
    assert Ownership.resolve("no-such-user-here", "kvm") == Ownership.running()
    # A group the host lacks: the user's own group.
    assert Ownership.resolve("nobody", "no-such-group-here").gid == 65534


def test_ownership_refuses_a_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        Ownership.resolve(dir_mode=0o10000)


@pytest.mark.parametrize(("given", "mode"), [("0755", 0o755), ("0o750", 0o750), (493, 0o755),
                                             ("700", 0o700)])
def test_config_reads_the_folder_mode_in_octal(given: object, mode: int) -> None:
    assert load_config({"link_dir_mode": given}, environ={})["link_dir_mode"] == mode


@pytest.mark.parametrize("given", ["rwxr-xr-x", "0999", -1, 0o17777, True])
def test_config_refuses_a_bad_folder_mode(given: object) -> None:
    with pytest.raises(ValueError, match="link_dir_mode"):
        load_config({"link_dir_mode": given}, environ={})


def test_config_reads_owner_and_devices_from_the_environment() -> None:
    config = load_config(environ={"OVIRT_CDROM_LINK_USER": "36",
                                  "OVIRT_CDROM_LINK_GROUP": "kvm",
                                  "OVIRT_CDROM_LVM_DEVICES": "/dev/loop3, /dev/loop4"})

    assert (config["link_user"], config["link_group"]) == ("36", "kvm")
    assert config["lvm_devices"] == ["/dev/loop3", "/dev/loop4"]
    defaults = load_config(environ={})
    assert (defaults["link_user"], defaults["link_group"], defaults["link_dir_mode"],
            defaults["lvm_devices"]) == ("vdsm", "kvm", 0o755, [])


def test_without_a_vdsm_user_everything_belongs_to_the_running_user(tmp_path: Path) -> None:
    links = BlockLinks(tmp_path, Ownership.resolve("no-such-user-here"))

    links.create(VOLUME, "/dev/x/y")

    made = [p for p in tmp_path.rglob("*")]
    assert made
    for path in made:
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()), path
        if stat.S_ISDIR(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o755, path
