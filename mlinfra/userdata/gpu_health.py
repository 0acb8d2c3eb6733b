#!/usr/bin/env python3
"""GPU health check of a training node: GPU count, uncorrected ECC errors and driver version via nvidia-smi.

Standard library only: user data copies this file onto the node (the AMI's python3 runs it) and the unit tests
import it with a fake ``nvidia-smi`` on PATH. Exit codes: 0 healthy, 1 unhealthy, 2 nvidia-smi missing or
failing. A JSON report goes to stdout (and to ``--report`` when given).

    gpu_health.py --expected-gpus 8 [--min-driver 535.0] [--report /var/lib/mlinfra/gpu-health.json]
    gpu_health.py --instance-type p4d.24xlarge --expected-by-type p4d.24xlarge=8,g5.48xlarge=8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys

QUERY_FIELDS = ("index", "name", "driver_version", "ecc.mode.current", "ecc.errors.uncorrected.volatile.total")
NOT_AVAILABLE = {"[N/A]", "N/A", "[Not Supported]", "Not Supported", ""}

EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_NO_SMI = 0, 1, 2


class NvidiaSmiError(RuntimeError):
    """nvidia-smi is missing, timed out or failed."""


@dataclasses.dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    driver_version: str
    ecc_mode: str
    #: None when the GPU does not report ECC counters.
    uncorrected_ecc_errors: int | None


def run_nvidia_smi(binary: str = "nvidia-smi", timeout: float = 60.0) -> str:
    path = shutil.which(binary)
    if path is None:
        raise NvidiaSmiError(f"{binary} not found on PATH: the AMI has no NVIDIA driver")
    try:
        proc = subprocess.run(
            [path, f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise NvidiaSmiError(f"{binary} did not answer within {timeout:g} s (a hung GPU or driver)") from None
    if proc.returncode != 0:
        raise NvidiaSmiError(f"{binary} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:500]}")
    return proc.stdout


def parse(csv_text: str) -> list[Gpu]:
    """Rows of ``nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits``."""
    gpus = []
    for line in csv_text.strip().splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(QUERY_FIELDS):
            raise ValueError(f"unexpected nvidia-smi row (want {len(QUERY_FIELDS)} fields): {line!r}")
        index, name, driver, ecc_mode, ecc_errors = cells
        gpus.append(Gpu(
            index=int(index), name=name, driver_version=driver, ecc_mode=ecc_mode,
            uncorrected_ecc_errors=None if ecc_errors in NOT_AVAILABLE else int(ecc_errors),
        ))
    return gpus


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def evaluate(gpus: list[Gpu], expected_gpus: int, min_driver: str | None = None) -> list[str]:
    """Problems found (empty: healthy)."""
    problems = []
    if len(gpus) != expected_gpus:
        problems.append(f"expected {expected_gpus} GPU(s), nvidia-smi lists {len(gpus)}")
    for gpu in gpus:
        if gpu.uncorrected_ecc_errors:
            problems.append(f"GPU {gpu.index} ({gpu.name}) has {gpu.uncorrected_ecc_errors} uncorrected ECC error(s)")
    drivers = sorted({g.driver_version for g in gpus})
    if len(drivers) > 1:
        problems.append(f"GPUs report different driver versions: {drivers}")
    if min_driver and drivers and _version(drivers[0]) < _version(min_driver):
        problems.append(f"driver {drivers[0]} is older than the required {min_driver}")
    return problems


def expected_for(instance_type: str, table: str) -> int:
    """``table``: ``type=count,type=count``."""
    mapping = dict(pair.split("=", 1) for pair in table.split(",") if "=" in pair)
    if instance_type not in mapping:
        raise ValueError(f"instance type {instance_type!r} is not in the expected-GPU table {sorted(mapping)}")
    return int(mapping[instance_type])


def check(expected_gpus: int, min_driver: str | None = None, binary: str = "nvidia-smi") -> tuple[int, dict]:
    """Run the whole check: (exit code, report)."""
    report: dict = {"expected_gpus": expected_gpus, "min_driver": min_driver}
    try:
        gpus = parse(run_nvidia_smi(binary))
    except (NvidiaSmiError, ValueError) as exc:
        report.update(healthy=False, problems=[str(exc)], gpus=[])
        return EXIT_NO_SMI, report
    problems = evaluate(gpus, expected_gpus, min_driver)
    report.update(healthy=not problems, problems=problems, gpus=[dataclasses.asdict(g) for g in gpus])
    return (EXIT_UNHEALTHY if problems else EXIT_HEALTHY), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU health check (nvidia-smi)")
    parser.add_argument("--expected-gpus", type=int)
    parser.add_argument("--instance-type")
    parser.add_argument("--expected-by-type", default="")
    parser.add_argument("--min-driver", default="")
    parser.add_argument("--report")
    args = parser.parse_args(argv)
    try:
        expected = args.expected_gpus if args.expected_gpus is not None else expected_for(
            args.instance_type or "", args.expected_by_type)
    except ValueError as exc:
        print(json.dumps({"healthy": False, "problems": [str(exc)]}))
        return EXIT_UNHEALTHY
    code, report = check(expected, args.min_driver or None)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
