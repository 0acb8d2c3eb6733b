"""Fuzz tests of the mlinfra command (issue 19 item 11): hostile numbers, closed pipes, unwritable init targets.

Every subcommand answers bad input with exit 2 and a message naming the argument, never a traceback; prints no
``Infinity``/``NaN`` in JSON; stays quiet when the reader of its output goes away (``| head``); and ``init``
writes the whole app or nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlinfra import cli

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ["inf", "-inf", "nan", "NaN", "Infinity", "1e400", "-1e400", "1e308", str(10**30), str(-(10**30)), "-1", "0",
           "0.0", "", " ", "abc", "1_000", "0x10", "1e-400", "9" * 400, "٣", "1,5"]
NUMBERS = st.one_of(st.sampled_from(HOSTILE), st.integers(-(10**40), 10**40).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr))
UNIT_SIZES = st.tuples(st.one_of(st.sampled_from(HOSTILE), st.floats(allow_nan=True, allow_infinity=True).map(repr)),
                       st.sampled_from(["TiB", "GB", "PiB", "B", "", "XB"])).map("".join)
UNIT_RATES = st.tuples(st.one_of(st.sampled_from(HOSTILE), st.floats(allow_nan=True, allow_infinity=True).map(repr)),
                       st.sampled_from(["Gbps", "bps", "MB/s", "Tbps", ""])).map("".join)


def _no_nan(text: str) -> None:
    def refuse(constant: str) -> None:
        raise AssertionError(f"non-JSON constant {constant} in the output")

    json.loads(text, parse_constant=refuse)


def _check(capsys, argv: list[str], flags: list[str]) -> int:
    code = cli.main(argv)  # a traceback would raise out of here and fail the test
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in out + err
    if code == 2:
        assert any(flag in err or flag in out for flag in flags), (argv, err)
    elif "--json" in argv:
        _no_nan(out)
    assert "inf" not in out.lower().replace("info", "") or "--json" not in argv
    return code


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gpus=NUMBERS, rate=NUMBERS, size=NUMBERS, free=NUMBERS, which=st.sampled_from(["gpus", "rate", "size", "free"]),
       unit=st.sampled_from(["--dataset-gib", "--dataset-tib"]), as_json=st.booleans())
def test_size_cache_refuses_hostile_numbers_by_name(capsys, gpus, rate, size, free, which, unit, as_json):
    good = {"gpus": "8", "rate": "200", "size": "500", "free": "0.1"}
    values = {**good, which: {"gpus": gpus, "rate": rate, "size": size, "free": free}[which]}
    argv = ["size-cache", "--gpus", values["gpus"], "--per-gpu-mbps", values["rate"], unit, values["size"],
            "--free-space", values["free"]] + (["--json"] if as_json else [])
    flag = {"gpus": "--gpus", "rate": "--per-gpu-mbps", "size": unit, "free": "--free-space"}[which]
    _check(capsys, argv, [flag])


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=UNIT_SIZES, link=UNIT_RATES, util=NUMBERS, deadline=st.one_of(st.none(), UNIT_SIZES.map(lambda s: s[:-1] + "d")),
       as_json=st.booleans())
def test_plan_transfer_refuses_hostile_values_by_name(capsys, size, link, util, deadline, as_json):
    argv = ["plan-transfer", "--size", size, "--link", link, "--utilization", util]
    argv += (["--deadline", deadline] if deadline else []) + (["--json"] if as_json else [])
    _check(capsys, argv, ["--size", "--link", "--utilization", "--deadline"])


@pytest.mark.parametrize("argv,flag", [
    (["size-cache", "--gpus", str(10**30), "--per-gpu-mbps", "100", "--dataset-gib", "10"], "--gpus"),
    (["size-cache", "--gpus", "8", "--per-gpu-mbps", "inf", "--dataset-gib", "10"], "--per-gpu-mbps"),
    (["size-cache", "--gpus", "8", "--per-gpu-mbps", "100", "--dataset-gib", "1e400"], "--dataset-gib"),
    (["size-cache", "--gpus", "8", "--per-gpu-mbps", "100", "--dataset-tib", "1e308", "--json"], "--dataset-tib"),
    (["size-cache", "--gpus", "8", "--per-gpu-mbps", "1e300", "--dataset-gib", "10", "--json"], "--per-gpu-mbps"),
    (["plan-transfer", "--size", "99999999999999999999999999999999PiB", "--link", "1bps", "--json"], "--size"),
    (["plan-transfer", "--size", "40TiB", "--link", "1Gbps", "--utilization", "inf"], "--utilization"),
    (["plan-transfer", "--size", "40TiB", "--link", "1Gbps", "--deadline", "1e400d"], "--deadline"),
    (["cost", "--max-idle", "inf"], "--max-idle"),
    (["cost", "--max-idle", "nan", "--json"], "--max-idle"),
])
def test_known_overflows_exit_2_naming_the_argument(capsys, argv, flag):
    code = cli.main(argv)
    _, err = capsys.readouterr()
    assert code == 2 and flag in err


def test_a_bad_value_a_subcommand_misses_is_still_a_usage_error(capsys):
    parser_func = lambda args: float("inf") and (_ for _ in ()).throw(OverflowError("int too large"))  # noqa: E731
    parser = cli.build_parser()
    args = parser.parse_args(["size-cache", "--gpus", "1", "--per-gpu-mbps", "1", "--dataset-gib", "1"])
    args.func = parser_func
    original = cli.build_parser
    try:
        cli.build_parser = lambda: type("P", (), {"parse_args": lambda self, argv: args, "print_help": print})()
        assert cli.main([]) == 2
    finally:
        cli.build_parser = original
    assert "mlinfra size-cache: error: int too large" in capsys.readouterr().err


# --- closed pipe: every subcommand that prints -------------------------------------------------------------------

PIPE_COMMANDS = {
    "validate": ["validate", str(ROOT / "config" / "platform.yaml")],
    "validate-json": ["validate", str(ROOT / "config" / "platform.yaml"), "--json"],
    "size-cache": ["size-cache", "--gpus", "8", "--per-gpu-mbps", "200", "--dataset-gib", "500"],
    "plan-transfer": ["plan-transfer", "--size", "40TiB", "--link", "1Gbps", "--json"],
    "plan-transfer-text": ["plan-transfer", "--size", "40TiB", "--link", "1Gbps"],
    "help": ["--help"],
    "init": ["init", "{tmp}/app", "--json"],
    "schema": ["schema"],
    "cost": ["cost", "--assembly", "{tmp}/cdk.out"],
    "cost-json": ["cost", "--assembly", "{tmp}/cdk.out", "--json"],
    "destroy-local": ["destroy-local", "--app-dir", "{tmp}"],  # nothing kept: says so on stdout
    # A real run needs an approval function or the emulator (the workflow and deploy tiers): their help here.
    "approve-help": ["approve", "--help"],
    "deploy-local-help": ["deploy-local", "--help"],
}
#: A cloud assembly of one small stack, for `cost`.
ASSEMBLY = {"manifest.json": {"version": "48.0.0", "artifacts": {"S": {
    "type": "aws:cloudformation:stack", "environment": "aws://111111111111/us-east-1",
    "properties": {"templateFile": "S.template.json"}}}},
    "S.template.json": {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}, "Bucket": {"Type": "AWS::S3::Bucket"}}}}


def test_the_closed_pipe_check_covers_every_subcommand():
    subcommands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert sorted(subcommands) == sorted({argv[0] for argv in PIPE_COMMANDS.values() if argv[0] != "--help"})


@pytest.mark.parametrize("name", sorted(PIPE_COMMANDS))
def test_a_closed_pipe_is_quiet_for_every_subcommand(tmp_path, name):
    for file, content in ASSEMBLY.items():
        (tmp_path / "cdk.out").mkdir(exist_ok=True)
        (tmp_path / "cdk.out" / file).write_text(json.dumps(content))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in PIPE_COMMANDS[name]]
    code = "import sys; from mlinfra.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()  # the reader goes away before the command writes (`| head -c 0`)
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode in (0, cli.EXIT_PIPE_CLOSED), (proc.returncode, err)


# --- init: all or nothing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["/proc/mlinfra-app", "{file}/app"])
def test_init_into_an_unwritable_path_writes_nothing(capsys, tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = Path(where.replace("{file}", str(blocker)))
    code = cli.main(["init", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "DIR" in err and "nothing was written" in err and "Traceback" not in err
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_init_failing_half_way_leaves_no_half_written_app(capsys, tmp_path, monkeypatch):
    from mlinfra import scaffold as scaffold_module

    real = Path.write_text
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", flaky)
    code = cli.main(["init", str(tmp_path / "app")])
    assert code == 2 and "No space left on device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [] and scaffold_module is not None


def test_init_force_failing_half_way_restores_the_directory(capsys, tmp_path, monkeypatch):
    target = tmp_path / "app"
    target.mkdir()
    (target / "README.md").write_text("mine")
    (target / "keep.txt").write_text("keep")
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 5:
            raise OSError(5, "I/O error")
        return real(src, dst)

    monkeypatch.setattr(cli.os, "replace", flaky)
    code = cli.main(["init", str(target), "--force"])
    assert code == 2
    monkeypatch.setattr(cli.os, "replace", real)
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "keep.txt"]
    assert (target / "README.md").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["app"]
