"""One source of configuration, read the same way everywhere.

Defaults, then the YAML file named by ``OVIRT_CDROM_CONFIG``, then ``OVIRT_CDROM_<KEY>``,
then the caller's own settings (a scenario's keys, vdsm's arguments); a bad value is an
error wherever it is read, naming the key and where it came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ovirt_cdrom.container import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
CRASHING = ROOT / "examples" / "change-crash-before-media-change.yaml"


def command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OVIRT_CDROM_")}
    return subprocess.run([sys.executable, "-m", "ovirt_cdrom", *args], capture_output=True,
                          text=True, timeout=120, check=False, env={**clean, **env})


def test_every_profile_writes_what_vdsm_reads_by_default() -> None:
    assert load_config(environ={})["metadata_encoding"] == "vdsm-4.50"
    for adapters in ("memory", "libvirt", "vdsm"):
        assert load_config({"adapters": adapters}, environ={})["metadata_encoding"] == \
            "vdsm-4.50"


def test_later_sources_win(tmp_path: Path) -> None:
    settings = tmp_path / "ovirt-cdrom.yaml"
    settings.write_text("metadata_encoding: design\nlibvirt_uri: qemu:///session\n")
    environ = {"OVIRT_CDROM_CONFIG": str(settings), "OVIRT_CDROM_LIBVIRT_URI": "test:///default"}
    config = load_config(environ=environ)
    assert (config["metadata_encoding"], config["libvirt_uri"]) == ("design", "test:///default")
    assert load_config({"metadata_encoding": "vdsm-4.50"}, environ)["metadata_encoding"] == \
        "vdsm-4.50"


@pytest.mark.parametrize(("environ", "named"), [
    ({"OVIRT_CDROM_METADATA_ENCODING": "bogus"}, "OVIRT_CDROM_METADATA_ENCODING"),
    ({"OVIRT_CDROM_FAIL_AT_CALL": "two"}, "OVIRT_CDROM_FAIL_AT_CALL"),
    ({"OVIRT_CDROM_ADAPTERS": "xen"}, "OVIRT_CDROM_ADAPTERS"),
], ids=["encoding", "integer", "choice"])
def test_a_bad_value_names_its_key_and_source(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(environ=environ)


def test_a_config_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    settings = tmp_path / "ovirt-cdrom.yaml"
    settings.write_text("metadata_encodng: design\n")
    with pytest.raises(ConfigError, match="unknown keys metadata_encodng"):
        load_config(environ={"OVIRT_CDROM_CONFIG": str(settings)})


def _metadata_xml(out: str) -> str:
    report: dict[str, Any] = json.loads(out)
    (vm,) = report["final"]["vms"].values()
    xml: str = vm["metadata_xml"]
    return xml


def test_the_simulator_reads_the_environment_and_the_scenario_wins(tmp_path: Path) -> None:
    # The crash leaves a pending change: the design encoding writes two sdc entries.
    design = command("simulate", "--json", str(CRASHING),
                     OVIRT_CDROM_METADATA_ENCODING="design")
    assert design.returncode == 0, design.stderr
    assert _metadata_xml(design.stdout).count('name="sdc"') == 1  # recovered at the end
    pending = tmp_path / "pending.yaml"
    text = CRASHING.read_text()
    pending.write_text(text[:text.index("  - recover:")])  # stop before the recovery
    two = command("simulate", "--json", str(pending), OVIRT_CDROM_METADATA_ENCODING="design")
    assert two.returncode == 0, two.stderr
    assert _metadata_xml(two.stdout).count('name="sdc"') == 2
    one = command("simulate", "--json", str(pending))
    assert _metadata_xml(one.stdout).count('name="sdc"') == 1
    pending.write_text("metadata_encoding: vdsm-4.50\n" + pending.read_text())
    own = command("simulate", "--json", str(pending), OVIRT_CDROM_METADATA_ENCODING="design")
    assert _metadata_xml(own.stdout).count('name="sdc"') == 1


@pytest.mark.parametrize("args", [["simulate", str(CRASHING)], ["demo"], ["bench", "--quick"]],
                         ids=["simulate", "demo", "bench"])
def test_every_command_refuses_a_bad_value_with_exit_2(args: list[str]) -> None:
    done = command(*args, OVIRT_CDROM_METADATA_ENCODING="bogus")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "OVIRT_CDROM_METADATA_ENCODING" in done.stderr
    assert "Traceback" not in done.stderr


def test_vdsm_without_storage_refuses_volumes_with_a_typed_error() -> None:
    """vdsm may run without a storage dispatcher (clientIF without irs): the product still
    builds, and a volume operation is a StorageError, not a crash."""
    from ovirt_cdrom.adapters.vdsm.storage import VdsmVolumeActivator  # noqa: PLC0415
    from ovirt_cdrom.domain.errors import StorageError  # noqa: PLC0415
    from rig import volume  # noqa: PLC0415

    activator = VdsmVolumeActivator(None)
    with pytest.raises(StorageError, match="storage dispatcher is not available"):
        activator.prepare(volume("fedora"))
    with pytest.raises(StorageError, match="storage dispatcher is not available"):
        activator.teardown(volume("fedora"))
