#!/usr/bin/env python3
"""GPU health check of a training node, after the public GPU cluster health checks.

Checks: GPU count, persistence mode, driver version, uncorrected ECC errors (volatile) and pending page
retirement, row remapping (pending or failed), critical XID events in the kernel log, NVLink links (types with
NVLink), the NVIDIA fabric manager and the GPU fabric state (NVSwitch types: p4d, p4de, p5*, p6*), the EFA device
count against the instance table, and DCGM diagnostics (``dcgmi diag -r 2`` at boot; skipped with a warning when
DCGM is not installed, and never on a periodic run, since it needs idle GPUs).

Standard library only: user data copies this file onto the node (the AMI's python3 runs it) and the unit tests
import it and feed it recorded ``nvidia-smi``/``dcgmi`` outputs through a fake command runner. Exit codes: 0
healthy, 1 unhealthy, 2 nvidia-smi missing or failing. A JSON report goes to stdout (and to ``--report``).

    gpu_health.py --expected-gpus 8 [--min-driver 535.0] [--report /var/lib/mlinfra/gpu-health.json]
    gpu_health.py --instance-type p4d.24xlarge --profiles '{"p4d.24xlarge": {"gpus": 8, "efa": 4, "nvlink": true,
        "fabric_manager": true}}' [--dcgm-level 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Callable

QUERY_FIELDS = ("index", "name", "driver_version", "persistence_mode", "ecc.mode.current",
                "ecc.errors.uncorrected.volatile.total", "retired_pages.pending")
REMAP_FIELDS = ("gpu_bus_id", "remapped_rows.pending", "remapped_rows.failure")
NOT_AVAILABLE = {"[N/A]", "N/A", "[Not Supported]", "Not Supported", ""}

#: XIDs that mean the GPU or its links need a reset or a replacement (NVIDIA's XID catalogue): double-bit ECC
#: (48), row-remap failure (64), NVLink error (74), fallen off the bus (79), ECC contained/uncontained (94, 95),
#: GSP errors (119, 120, 121), uncorrectable SRAM/HBM (140), recovery action required (154).
CRITICAL_XIDS = frozenset({48, 64, 74, 79, 94, 95, 119, 120, 121, 140, 154})
_XID_RE = re.compile(r"NVRM: Xid \((?P<pci>[^)]*)\): (?P<xid>\d+)")

EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_NO_SMI = 0, 1, 2

#: ``runner(argv, timeout) -> (exit code, stdout)``; 127 when the program does not exist.
Runner = Callable[[list, float], "tuple[int, str]"]


class NvidiaSmiError(RuntimeError):
    """nvidia-smi is missing, timed out or failed."""


@dataclasses.dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    driver_version: str
    persistence_mode: str
    ecc_mode: str
    #: None when the GPU does not report ECC counters.
    uncorrected_ecc_errors: int | None
    retired_pages_pending: bool = False


def run(argv: list, timeout: float = 60.0) -> tuple[int, str]:
    """The default runner: the program's exit code and stdout (127 when absent, 124 on timeout)."""
    path = shutil.which(argv[0])
    if path is None:
        return 127, ""
    try:
        proc = subprocess.run([path, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, ""
    return proc.returncode, proc.stdout


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


def _rows(csv_text: str, width: int) -> list[list[str]]:
    rows = []
    for line in csv_text.strip().splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != width:
            raise ValueError(f"unexpected nvidia-smi row (want {width} fields): {line!r}")
        rows.append(cells)
    return rows


def parse(csv_text: str) -> list[Gpu]:
    """Rows of ``nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits``."""
    return [Gpu(index=int(i), name=name, driver_version=driver, persistence_mode=persistence, ecc_mode=ecc_mode,
                uncorrected_ecc_errors=None if ecc in NOT_AVAILABLE else int(ecc),
                retired_pages_pending=pending.lower() == "yes")
            for i, name, driver, persistence, ecc_mode, ecc, pending in _rows(csv_text, len(QUERY_FIELDS))]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def evaluate(gpus: list[Gpu], expected_gpus: int, min_driver: str | None = None) -> list[str]:
    """Problems of the ``--query-gpu`` answer (empty: healthy)."""
    problems = []
    if len(gpus) != expected_gpus:
        problems.append(f"expected {expected_gpus} GPU(s), nvidia-smi lists {len(gpus)}")
    for gpu in gpus:
        if gpu.uncorrected_ecc_errors:
            problems.append(f"GPU {gpu.index} ({gpu.name}) has {gpu.uncorrected_ecc_errors} uncorrected ECC error(s)")
        if gpu.retired_pages_pending:
            problems.append(f"GPU {gpu.index} has a page retirement pending (needs a GPU reset)")
        if gpu.persistence_mode not in NOT_AVAILABLE and gpu.persistence_mode != "Enabled":
            problems.append(f"GPU {gpu.index} persistence mode is {gpu.persistence_mode} (expected Enabled)")
    drivers = sorted({g.driver_version for g in gpus})
    if len(drivers) > 1:
        problems.append(f"GPUs report different driver versions: {drivers}")
    if min_driver and drivers and _version(drivers[0]) < _version(min_driver):
        problems.append(f"driver {drivers[0]} is older than the required {min_driver}")
    return problems


def remapped_row_problems(csv_text: str) -> list[str]:
    """``nvidia-smi --query-remapped-rows=<REMAP_FIELDS> --format=csv,noheader``: pending or failed remaps."""
    problems = []
    for bus, pending, failure in _rows(csv_text, len(REMAP_FIELDS)):
        if pending.lower() == "yes":
            problems.append(f"GPU {bus} has a row remapping pending (needs a GPU reset)")
        if failure.lower() == "yes":
            problems.append(f"GPU {bus} has a failed row remapping (replace the node)")
    return problems


def xid_problems(kernel_log: str) -> list[str]:
    """Critical XID events (``NVRM: Xid (PCI:...): N, ...``) in the kernel log since boot."""
    seen: dict[tuple[str, int], int] = {}
    for m in _XID_RE.finditer(kernel_log):
        xid = int(m["xid"])
        if xid in CRITICAL_XIDS:
            seen[(m["pci"], xid)] = seen.get((m["pci"], xid), 0) + 1
    return [f"XID {xid} on {pci} ({n} event(s))" for (pci, xid), n in sorted(seen.items())]


def nvlink_problems(status: str, expected_gpus: int) -> list[str]:
    """``nvidia-smi nvlink --status``: every GPU lists its links and none is inactive."""
    problems, gpu, links = [], None, {}
    for line in status.splitlines():
        head = re.match(r"GPU (\d+):", line.strip())
        if head:
            gpu = int(head[1])
            links[gpu] = 0
            continue
        link = re.match(r"Link (\d+): (.*)", line.strip())
        if link and gpu is not None:
            links[gpu] += 1
            if "inactive" in link[2].lower() or not re.search(r"\d+(\.\d+)? GB/s", link[2]):
                problems.append(f"GPU {gpu} NVLink {link[1]} is {link[2].strip()}")
    if len(links) != expected_gpus:
        problems.append(f"nvidia-smi nvlink lists {len(links)} GPU(s), expected {expected_gpus}")
    problems += [f"GPU {g} has no active NVLink" for g, n in sorted(links.items()) if n == 0]
    return problems


def fabric_problems(fm_state: str, query: str) -> list[str]:
    """The fabric manager service (``systemctl is-active nvidia-fabricmanager``) and, where ``nvidia-smi -q``
    has a Fabric section (H100 and later), its State ``Completed`` and Status ``Success``."""
    problems = []
    if fm_state.strip() != "active":
        problems.append(f"nvidia-fabricmanager is {fm_state.strip() or 'not installed'} (NVSwitch types need it)")
    for block in re.finditer(r"^\s*Fabric\s*\n((?:\s{8,}.*\n?)+)", query, re.MULTILINE):
        fields = dict(re.findall(r"^\s*(State|Status)\s*:\s*(.+?)\s*$", block[1], re.MULTILINE))
        if fields.get("State", "Completed") != "Completed" or fields.get("Status", "Success") != "Success":
            problems.append(f"GPU fabric State {fields.get('State')}, Status {fields.get('Status')}")
    return problems


def efa_problems(sysfs: str, expected: int) -> list[str]:
    """EFA devices in ``/sys/class/infiniband`` against the type's EFA interfaces (rule ec2.efa-interface-count)."""
    found = sorted(os.listdir(sysfs)) if os.path.isdir(sysfs) else []
    if len(found) != expected:
        return [f"expected {expected} EFA device(s), {sysfs} lists {len(found)}: {found}"]
    return []


def dcgm_problems(report_json: str) -> list[str]:
    """Failed tests of ``dcgmi diag -r N -j`` (any nesting of DCGM 3 and 4's JSON)."""
    problems: list[str] = []

    def walk(node, test: str = "") -> None:
        if isinstance(node, dict):
            name = node.get("name") or node.get("test_name") or test
            if str(node.get("status", "")).lower() == "fail":
                where = node.get("gpu_id", node.get("entity_id", ""))
                info = node.get("info") or node.get("warnings") or node.get("warning") or ""
                problems.append(f"DCGM {name} failed{f' on GPU {where}' if where != '' else ''}: {str(info)[:200]}")
            for value in node.values():
                walk(value, name)
        elif isinstance(node, list):
            for value in node:
                walk(value, test)

    walk(json.loads(report_json))
    return problems


def check(expected_gpus: int, min_driver: str | None = None, binary: str = "nvidia-smi") -> tuple[int, dict]:
    """The ``--query-gpu`` part alone: (exit code, report)."""
    report: dict = {"expected_gpus": expected_gpus, "min_driver": min_driver}
    try:
        gpus = parse(run_nvidia_smi(binary))
    except (NvidiaSmiError, ValueError) as exc:
        report.update(healthy=False, problems=[str(exc)], gpus=[])
        return EXIT_NO_SMI, report
    problems = evaluate(gpus, expected_gpus, min_driver)
    report.update(healthy=not problems, problems=problems, gpus=[dataclasses.asdict(g) for g in gpus])
    return (EXIT_UNHEALTHY if problems else EXIT_HEALTHY), report


def check_node(profile: dict, *, min_driver: str | None = None, dcgm_level: int = 2, runner: Runner = run,
               sysfs: str = "/sys/class/infiniband") -> tuple[int, dict]:
    """Every check for one instance profile (``gpus``, ``efa``, ``nvlink``, ``fabric_manager``)."""
    code, report = check(int(profile["gpus"]), min_driver)
    if code == EXIT_NO_SMI:
        return code, report
    problems, warnings, checks = list(report["problems"]), [], {"gpus": "fail" if report["problems"] else "pass"}

    def step(name: str, found: list[str]) -> None:
        checks[name] = "fail" if found else "pass"
        problems.extend(found)

    rc, out = runner(["nvidia-smi", f"--query-remapped-rows={','.join(REMAP_FIELDS)}", "--format=csv,noheader"], 60)
    try:
        supported = rc == 0 and out.strip() and not any(n in out for n in ("Not Supported", "N/A"))
        if supported:
            step("row_remapping", remapped_row_problems(out))
    except ValueError as exc:
        supported = False
        warnings.append(f"row remapping not read: {exc}")
    if not supported:
        checks["row_remapping"] = "skipped"  # GPUs before A100 retire pages instead (checked above)
    rc, log = runner(["journalctl", "-k", "-b", "--no-pager", "-o", "cat"], 60)
    if rc != 0:
        rc, log = runner(["dmesg"], 60)
    step("xid", xid_problems(log or ""))
    if profile.get("nvlink"):
        rc, out = runner(["nvidia-smi", "nvlink", "--status"], 60)
        step("nvlink", nvlink_problems(out, int(profile["gpus"])) if rc == 0 else [f"nvidia-smi nvlink exited {rc}"])
    if profile.get("fabric_manager"):
        _, state = runner(["systemctl", "is-active", "nvidia-fabricmanager"], 30)
        _, query = runner(["nvidia-smi", "-q"], 120)
        step("fabric_manager", fabric_problems(state, query))
    if "efa" in profile:
        step("efa", efa_problems(sysfs, int(profile["efa"])))
    if dcgm_level > 0:
        rc, out = runner(["dcgmi", "diag", "-r", str(dcgm_level), "-j"], 3600)
        if rc == 127:
            checks["dcgm"] = "skipped"
            warnings.append("dcgmi not installed: DCGM diagnostics skipped (install datacenter-gpu-manager)")
        else:
            try:
                step("dcgm", dcgm_problems(out))
            except ValueError:
                step("dcgm", [f"dcgmi diag -r {dcgm_level} exited {rc} without a JSON report"])
    report.update(healthy=not problems, problems=problems, warnings=warnings, checks=checks, profile=profile)
    return (EXIT_UNHEALTHY if problems else EXIT_HEALTHY), report


def expected_for(instance_type: str, table: str) -> int:
    """``table``: ``type=count,type=count``."""
    mapping = dict(pair.split("=", 1) for pair in table.split(",") if "=" in pair)
    if instance_type not in mapping:
        raise ValueError(f"instance type {instance_type!r} is not in the expected-GPU table {sorted(mapping)}")
    return int(mapping[instance_type])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU health check")
    parser.add_argument("--expected-gpus", type=int)
    parser.add_argument("--instance-type")
    parser.add_argument("--expected-by-type", default="")
    parser.add_argument("--profiles", default="", help="JSON: type -> {gpus, efa, nvlink, fabric_manager}")
    parser.add_argument("--min-driver", default="")
    parser.add_argument("--dcgm-level", type=int, default=2, choices=(0, 1, 2, 3, 4))
    parser.add_argument("--report")
    args = parser.parse_args(argv)
    try:
        if args.profiles:
            profiles = json.loads(args.profiles)
            if args.instance_type not in profiles:
                raise ValueError(f"instance type {args.instance_type!r} is not in the profiles {sorted(profiles)}")
            code, report = check_node(profiles[args.instance_type], min_driver=args.min_driver or None,
                                      dcgm_level=args.dcgm_level)
        else:
            expected = args.expected_gpus if args.expected_gpus is not None else expected_for(
                args.instance_type or "", args.expected_by_type)
            code, report = check(expected, args.min_driver or None)
    except ValueError as exc:
        print(json.dumps({"healthy": False, "problems": [str(exc)]}))
        return EXIT_UNHEALTHY
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
