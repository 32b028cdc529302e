"""The command line as its users meet it (issue 13): help, version, options anywhere,
bounded input with limits that say their name, readable reports, the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .hosts import VM1, VM2, A, B, change, crash_at, scenario, vm

ROOT = Path(__file__).resolve().parents[2]


def command(*args: str, stdin: str | bytes | None = None,
            columns: int = 200) -> subprocess.CompletedProcess[str]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    env = {**os.environ, "COLUMNS": str(columns)}  # by default wide: lines are not wrapped
    done = subprocess.run([sys.executable, "-m", "ovirt_cdrom", *args], capture_output=True,
                          input=data, timeout=120, check=False, env=env)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode(errors="replace"),
                                       done.stderr.decode(errors="replace"))


def test_no_command_prints_the_help() -> None:
    done = command()
    assert done.returncode == 0
    assert "COMMAND" in done.stdout and "simulate" in done.stdout and "bench" in done.stdout


def test_version() -> None:
    done = command("--version")
    assert done.returncode == 0 and done.stdout.startswith("ovirt-cdrom ")


def test_simulate_help_gives_exit_codes_examples_and_docs() -> None:
    done = command("simulate", "--help")
    assert done.returncode == 0
    for words in ("exit status", "0  the scenarios ran", "2  the file is invalid",
                  "examples/", "docs/simulator.md", "docs/design.md", "--max-bytes"):
        assert words in done.stdout, words


def test_bench_help_says_what_it_measures_and_what_it_costs() -> None:
    done = command("bench", "--help")
    assert done.returncode == 0
    for words in ("recover_all", "about a minute", "1 GB"):
        assert words in done.stdout, words


@pytest.mark.parametrize("args", [["-v", "simulate"], ["simulate", "-v"]],
                         ids=["before", "after"])
def test_verbose_before_or_after_the_command_logs_what_each_operation_does(
        args: list[str]) -> None:
    done = command(*args, "-", stdin=json.dumps(scenario([vm(VM1)], [change(VM1, A)])))
    assert done.returncode == 0, done.stderr
    assert "INFO" in done.stderr and "changeCD" in done.stderr


def test_very_verbose_logs_every_port_call() -> None:
    done = command("simulate", "-vv", "-", stdin=json.dumps(scenario([vm(VM1)],
                                                                    [change(VM1, A)])))
    assert "hypervisor.load" in done.stderr and "DEBUG" in done.stderr


# --- bounded input ------------------------------------------------------------------------


def test_an_endless_file_is_refused_at_the_limit() -> None:
    done = command("simulate", "--max-bytes", "4096", "/dev/zero")
    assert done.returncode == 2
    assert "larger than 4096 bytes (--max-bytes raises the limit)" in done.stderr


def test_the_byte_limit_can_be_raised(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(scenario([vm(VM1)], [change(VM1, A)], name="x" * 3000)))
    assert command("simulate", "--max-bytes", "1000", str(path)).returncode == 2
    assert command("simulate", "--max-bytes", "100000", "--json", str(path)).returncode == 0


def test_the_value_limit_names_itself_and_how_to_raise_it() -> None:
    text = json.dumps(scenario([vm(VM1)], [change(VM1, A)]))
    done = command("simulate", "--max-values", "10", "-", stdin=text)
    assert done.returncode == 2
    assert "more than 10 values" in done.stderr and "--max-values" in done.stderr
    assert command("simulate", "--json", "-", stdin=text).returncode == 0


def test_binary_input_gets_the_same_message_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    data = b"\xff\xfe\x00\x01 binary"
    path = tmp_path / "binary.yaml"
    path.write_bytes(data)
    from_file = command("simulate", str(path))
    from_stdin = command("simulate", "-", stdin=data)
    assert from_file.returncode == from_stdin.returncode == 2
    assert from_file.stderr.replace(str(path), "SOURCE") == \
        from_stdin.stderr.replace("<stdin>", "SOURCE")
    assert "not UTF-8 text" in from_file.stderr


@pytest.mark.parametrize("index", ["1" * 41, 10 ** 40, "1000000"],
                         ids=["41-digit-string", "41-digit-int", "seven-digits"])
def test_a_huge_index_is_too_large(index: object) -> None:
    doc = scenario([{"id": VM1, "drives": [{"iface": "sata", "index": index}]}], [])
    done = command("simulate", "-", stdin=json.dumps(doc))
    assert done.returncode == 2
    assert "vms[0].drives[0].index: out of range: too large" in done.stderr


def test_a_huge_call_number_is_refused_like_any_out_of_range_number() -> None:
    step = {**change(VM1, A), "fail_at_call": 10 ** 26}
    done = command("simulate", "-", stdin=json.dumps(scenario([vm(VM1)], [step])))
    assert done.returncode == 2
    assert "steps[0].fail_at_call: expected an integer from 1 to 1000000, got too large" \
        in done.stderr


# --- the report ---------------------------------------------------------------------------


def report_of(step: dict[str, Any], trace: bool = False) -> dict[str, Any]:
    doc = scenario([vm(VM1)], [step])
    args = ["simulate", "--json", *(["--trace"] if trace else []), "-"]
    out: dict[str, Any] = json.loads(command(*args, stdin=json.dumps(doc)).stdout)
    return out


def _labelled(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    doc = scenario([vm(VM1, A)], steps, **extra)
    doc["volumes"] = [{"name": "fedora.iso", **A}, {"name": "debian.iso", **B}]
    return doc


def test_labels_are_shown_and_carried_in_the_json() -> None:
    doc = _labelled([change(VM1, B)])
    readable = command("simulate", "-", stdin=json.dumps(doc))
    assert "load volume debian.iso" in readable.stdout
    assert "fedora.iso" in readable.stdout
    report = json.loads(command("simulate", "--json", "-", stdin=json.dumps(doc)).stdout)
    names = {v["volumeID"]: v.get("name") for v in report["final"]["volumes"]}
    assert names == {A["volumeID"]: "fedora.iso", B["volumeID"]: "debian.iso"}


def test_a_label_must_be_a_printable_string() -> None:
    doc = _labelled([])
    doc["volumes"][0]["name"] = ""
    done = command("simulate", "-", stdin=json.dumps(doc))
    assert done.returncode == 2 and "volumes[0].name" in done.stderr


def test_trace_gives_the_host_after_each_step_and_the_markers_it_left() -> None:
    doc = _labelled([{**change(VM1, B), **crash_at("hypervisor.load")}, {"recover": {}}])
    report = json.loads(command("simulate", "--json", "--trace", "-",
                                stdin=json.dumps(doc)).stdout)
    crashed, recovered = report["steps"]
    assert crashed["markers"] == [f"{VM1}/sdc"]
    assert "markers" not in recovered
    entries = crashed["after"]["vms"][VM1]["drives"]["sdc"]["metadata"]
    assert [e["state"] for e in entries] == ["ejecting", "loading"]
    assert recovered["after"]["vms"][VM1]["drives"]["sdc"]["metadata"] == \
        report["final"]["vms"][VM1]["drives"]["sdc"]["metadata"]
    writes = [c["occurrence"] for c in report_of(change(VM1, A), trace=True)["steps"][0]["trace"]
              if c["port"] == "metadata" and c["method"] == "write"]
    assert writes == [1, 2]
    readable = command("simulate", "--trace", "-", stdin=json.dumps(doc)).stdout
    assert "left markers for recovery" in readable and "After step 1:" in readable
    assert "writes changing fedora.iso to debian.iso" in readable


def test_ids_are_cut_to_their_shortest_unique_prefix() -> None:
    twin = VM1[:-1] + ("0" if VM1[-1] != "0" else "1")  # the same but the last digit
    doc = scenario([vm(VM1), vm(twin)], [change(VM1, A)])
    readable = command("simulate", "-", stdin=json.dumps(doc)).stdout
    assert f"VM {VM1}" in readable and f"VM {twin}" in readable  # 35 digits in common
    other = scenario([vm(VM1), vm(VM2)], [change(VM1, A)])
    readable = command("simulate", "-", stdin=json.dumps(other)).stdout
    assert f"VM {VM1[:8]} " in readable and VM1 not in readable.split("metadata_xml")[0]


@pytest.mark.parametrize("columns", [40, 60])
def test_a_narrow_terminal_wraps_ids_and_titles_without_cutting_them(columns: int) -> None:
    example = Path(__file__).parents[2] / "examples" / "shared-iso-eject.yaml"
    done = command("simulate", "--trace", str(example), columns=columns)
    assert done.returncode == 0
    assert "…" not in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= columns


def test_the_metadata_block_is_printed_as_stored_with_ids_whole() -> None:
    readable = command("simulate", "-", stdin=json.dumps(_labelled([]))).stdout
    assert "as stored (ids whole)" in readable
    assert f"<ovirt-vm:volumeID>{A['volumeID']}</ovirt-vm:volumeID>" in readable


def test_several_scenarios_end_with_a_summary_line() -> None:
    docs = [scenario([vm(VM1)], [change(VM1, A)], name="kept"),
            scenario([vm(VM1)], [{**change(VM1, A), **crash_at("hypervisor.load")}],
                     name="left a marker")]
    done = command("simulate", "-", stdin=json.dumps(docs))
    assert done.returncode == 0
    assert done.stdout.rstrip().splitlines()[-1] == \
        "2 scenarios: 1 kept every promise; broken in: left a marker"


def test_the_demo_prints_vdsms_answer_and_paths_whole() -> None:
    done = command("demo")
    assert done.returncode == 0
    assert 'vdsm answers: {"vmList": {}}' in done.stdout
    flat = "".join(line.strip("│ ") for line in done.stdout.splitlines())
    assert "/rhev/data-center/mnt/blockSD/88252cf6-381e-48f0-8795-a294a32c7149/images/" in flat
    assert "…" not in done.stdout
