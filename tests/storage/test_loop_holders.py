"""A process that opens a loop device only for a moment (a device scanner such as
``losetup`` or ``blkid``) does not make teardown refuse (root only)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ovirt_cdrom.adapters.loop import HOLDER_RECHECKS

from .realdev import LoopSandbox, loop_sandbox, new_volume

pytestmark = pytest.mark.root


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[LoopSandbox]:
    with loop_sandbox(tmp_path) as sandbox:
        yield sandbox


def test_a_passing_holder_does_not_refuse_teardown(sandbox: LoopSandbox) -> None:
    activator = sandbox.activator()
    volume = new_volume()
    sandbox.add_volume(volume)
    device = os.path.realpath(activator.prepare(volume).path)
    # Holds the device for less than the rechecks wait in all, then exits.
    hold_s = sum(HOLDER_RECHECKS) / 3
    passer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; f = open(sys.argv[1], 'rb'); print(flush=True); "
         "time.sleep(float(sys.argv[2]))", device, str(hold_s)],
        stdout=subprocess.PIPE)
    try:
        assert passer.stdout is not None
        passer.stdout.readline()  # the device is open now
        assert any(f"pid {passer.pid} " in h for h in activator.holders(device))
        activator.teardown(volume)
    finally:
        passer.wait(timeout=10)
    assert not activator.is_active(volume)
    assert sandbox.attached() == []
