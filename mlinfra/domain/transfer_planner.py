"""Transfer planner: how long a bulk copy into the lake takes online, and which method to use.

Pure Python (no CDK import) so the ``mlinfra plan-transfer`` CLI command and notebooks use it without jsii.

Units are explicit and ambiguous spellings are rejected:

- sizes: ``B``, decimal ``KB MB GB TB PB`` (10^3 steps) or binary ``KiB MiB GiB TiB PiB`` (2^10 steps).
  ``40T``, ``1G``, ``40tb`` or ``40Tb`` (bits?) are rejected.
- rates: bits per second ``bps kbps Mbps Gbps Tbps`` (also ``Mbit/s``), or bytes per second ``B/s KB/s MB/s
  GB/s MiB/s GiB/s``. ``1G``, ``1GB`` (a size), ``1GBps`` (bytes or bits?) and ``1mbps`` (milli?) are rejected.
- durations: ``<n>h``, ``<n>d`` or ``<n>w`` (``14d``); a bare number is rejected.

Method (thresholds and sources):

- Online time = size x 8 / (link bits/s x utilization). ``utilization`` (0-1] is the share of the link the
  copy may use; it also absorbs protocol overhead (about 0.8 is a common planning figure on a dedicated link).
- The link meets the deadline when online time <= deadline. Then:
  * DataSync (the default), with its task option ``BytesPerSecond`` set to link x utilization (bytes/s) so the
    copy leaves the rest of the link to other traffic. One DataSync task uses up to about 10 Gbps (DataSync
    FAQ/quotas, Basic mode); above that the plan says to split the copy across tasks and agents.
  * S3 Transfer Acceleration instead when the data crosses the public internet over a long distance (clients
    far from the bucket's region upload straight to S3 through CloudFront edge locations; AWS's speed
    comparison tool measures the gain per location). Turn it on with ``data_lake.landing_transfer_acceleration``.
- Otherwise physical transfer. Snowball Edge has been open to existing customers only since 2025-11-07, and
  Snowcone and Snowmobile are retired (FACTS.md), so for new customers the plan recommends AWS Data Transfer
  Terminal (bring your own storage devices to an AWS facility with high-speed connectivity), and mentions
  Snowball Edge Storage Optimized (210 TB usable per device, AWS Snowball Edge specifications) with a device
  count only for existing Snowball customers. It also reports the link speed that would meet the deadline.
"""

from __future__ import annotations

import argparse
import dataclasses
import fractions
import json
import math
import re
from typing import Any

from mlinfra.domain.cli_args import number, parsed

__all__ = [
    "TransferPlan",
    "parse_size",
    "parse_rate",
    "parse_duration",
    "plan_transfer",
    "register_cli",
    "format_plan",
    "format_duration",
]

SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50,
}
#: Rate units in BITS per second.
RATE_UNITS: dict[str, int] = {
    "bps": 1, "kbps": 10**3, "Kbps": 10**3, "Mbps": 10**6, "Gbps": 10**9, "Tbps": 10**12,
    "bit/s": 1, "kbit/s": 10**3, "Kbit/s": 10**3, "Mbit/s": 10**6, "Gbit/s": 10**9, "Tbit/s": 10**12,
    "B/s": 8, "KB/s": 8 * 10**3, "MB/s": 8 * 10**6, "GB/s": 8 * 10**9, "TB/s": 8 * 10**12,
    "KiB/s": 8 * 2**10, "MiB/s": 8 * 2**20, "GiB/s": 8 * 2**30, "TiB/s": 8 * 2**40,
}
DURATION_UNITS: dict[str, int] = {"h": 3600, "d": 86400, "w": 7 * 86400}

#: One DataSync task moves up to about 10 Gbps (DataSync FAQ and quotas, Basic mode task).
DATASYNC_TASK_MAX_BPS = 10 * 10**9
#: Usable capacity of one Snowball Edge Storage Optimized device (AWS Snowball Edge specifications: 210 TB).
SNOWBALL_EDGE_USABLE_BYTES = 210 * 10**12
#: The smallest bandwidth limit mlinfra sets on a DataSync task (1 MiB/s); -1 means unlimited.
DATASYNC_MIN_BYTES_PER_SECOND = 1024 * 1024

_NUMBER = r"(?P<n>\d+(?:\.\d+)?)\s*"


def _parse(text: str, units: dict[str, int], what: str, example: str) -> fractions.Fraction:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string such as {example!r}, got: {text!r}")
    match = re.fullmatch(_NUMBER + r"(?P<u>[A-Za-z/]*)", text.strip())
    if not match or match.group("u") not in units:
        raise ValueError(
            f"{what} must be a number with an explicit unit ({', '.join(units)}), e.g. {example!r}, got: {text!r}"
        )
    return fractions.Fraction(match.group("n")) * units[match.group("u")]  # exact: no float rounding


def parse_size(text: str) -> int:
    """Bytes in ``text`` (``40TiB``, ``1.5 TB``); raises ValueError on a missing or ambiguous unit."""
    value = _parse(text, SIZE_UNITS, "size", "40TiB")
    if value <= 0:
        raise ValueError(f"size must be positive, got: {text!r}")
    return int(round(value))


def parse_rate(text: str) -> float:
    """Bits per second in ``text`` (``1Gbps``, ``125MB/s``); raises ValueError on an ambiguous unit."""
    value = _parse(text, RATE_UNITS, "link", "1Gbps")
    if value <= 0:
        raise ValueError(f"link must be positive, got: {text!r}")
    return float(value)


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``36h``, ``14d``, ``2w``)."""
    value = _parse(text, DURATION_UNITS, "deadline", "14d")
    if value <= 0:
        raise ValueError(f"deadline must be positive, got: {text!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class TransferPlan:
    size_bytes: int
    link_bits_per_second: float
    utilization: float
    deadline_days: float | None
    days_online: float
    meets_deadline: bool
    #: ``datasync``, ``s3-transfer-acceleration`` or ``data-transfer-terminal``.
    method: str
    #: DataSync ``Options.BytesPerSecond`` to set (link x utilization), for the online methods.
    datasync_bytes_per_second: int | None
    #: Link speed (bits/s, at this utilization) that would meet the deadline.
    required_bits_per_second: float | None
    #: Snowball Edge Storage Optimized devices needed, for EXISTING Snowball customers only.
    snowball_edge_devices_existing_customers: int | None
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"notes": list(self.notes)}


def plan_transfer(
    size: str | int,
    link: str | float,
    *,
    utilization: float = 0.8,
    deadline: str | float | None = None,
    public_internet: bool = False,
    long_distance: bool = False,
) -> TransferPlan:
    """Plan a bulk copy of ``size`` over ``link`` (strings with units, or bytes and bits/s numbers).

    :param utilization: share of the link the copy may use, in (0, 1]. :default: 0.8
    :param deadline: ``14d``-style duration or seconds. :default: None (no deadline: always online)
    :param public_internet: the data crosses the public internet (no Direct Connect/VPN). :default: False
    :param long_distance: the source is far from the bucket's region (another continent). :default: False
    """
    size_bytes = parse_size(size) if isinstance(size, str) else int(size)
    bps = parse_rate(link) if isinstance(link, str) else float(link)
    deadline_s = parse_duration(deadline) if isinstance(deadline, str) else deadline
    if size_bytes <= 0:
        raise ValueError(f"size must be positive, got: {size_bytes}")
    if bps <= 0:
        raise ValueError(f"link must be positive, got: {bps}")
    if not (isinstance(utilization, (int, float)) and 0 < utilization <= 1):
        raise ValueError(f"utilization must be in (0, 1], got: {utilization!r}")
    if deadline_s is not None and deadline_s <= 0:
        raise ValueError(f"deadline must be positive, got: {deadline_s}")

    effective = bps * utilization
    seconds = size_bytes * 8 / effective
    days = seconds / 86400
    meets = deadline_s is None or seconds <= deadline_s
    notes: list[str] = []
    required = size_bytes * 8 / (deadline_s * utilization) if deadline_s else None
    limit = max(DATASYNC_MIN_BYTES_PER_SECOND, int(effective // 8))
    devices = None
    if meets:
        if public_internet and long_distance:
            method = "s3-transfer-acceleration"
            notes.append(
                "Upload straight to the landing bucket through S3 Transfer Acceleration "
                "(data_lake.landing_transfer_acceleration: true; endpoint <bucket>.s3-accelerate.amazonaws.com); "
                "compare with AWS's speed comparison tool before committing."
            )
        else:
            method = "datasync"
            notes.append(f"DataSync task option BytesPerSecond={limit} (link x utilization).")
        if effective > DATASYNC_TASK_MAX_BPS and method == "datasync":
            tasks = math.ceil(effective / DATASYNC_TASK_MAX_BPS)
            notes.append(f"One DataSync task moves about 10 Gbps: split the copy across {tasks} tasks/agents by prefix.")
    else:
        method = "data-transfer-terminal"
        devices = math.ceil(size_bytes / SNOWBALL_EDGE_USABLE_BYTES)
        notes.append(
            f"The link needs {format_duration(seconds)} online, over the deadline of {format_duration(deadline_s)}: "
            "ship the data. "
            "New customers: AWS Data Transfer Terminal (bring your own storage devices to an AWS facility)."
        )
        notes.append(
            f"Existing Snowball customers only (Snowball Edge is closed to new customers since 2025-11-07): "
            f"{devices} Snowball Edge Storage Optimized device(s) of 210 TB."
        )
        notes.append(f"Online would need {_fmt_rate(required)} at utilization {utilization:g}.")
    return TransferPlan(
        size_bytes=size_bytes,
        link_bits_per_second=bps,
        utilization=float(utilization),
        deadline_days=None if deadline_s is None else deadline_s / 86400,
        days_online=days,
        meets_deadline=meets,
        method=method,
        datasync_bytes_per_second=limit if meets else None,
        required_bits_per_second=required,
        snowball_edge_devices_existing_customers=devices,
        notes=tuple(notes),
    )


def _fmt_rate(bits: float | None) -> str:
    if bits is None:
        return "-"
    for unit, scale in (("Tbps", 1e12), ("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.2f} {unit}"
    return f"{bits:.0f} bps"


def _fmt_size(n: int) -> str:
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        if n >= SIZE_UNITS[unit]:
            return f"{n / SIZE_UNITS[unit]:.2f} {unit} ({n / SIZE_UNITS[unit.replace('i', '')]:.2f} {unit.replace('i', '')})"
    return f"{n} B"


def format_duration(seconds: float) -> str:
    """``seconds`` in the unit a reader expects: days from one day up, hours under a day, minutes under an hour,
    seconds under a minute; three significant digits (``5.09 days``, ``3.1 hours``, ``12 minutes``)."""
    for unit, scale in (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1)):
        if seconds >= scale or unit == "seconds":
            value = seconds / scale
            break
    if value < 0.001:
        return "under 0.001 seconds"
    digits = min(3, max(0, 2 - math.floor(math.log10(value))))
    text = f"{value:,.{digits}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return f"{text} {unit.removesuffix('s') if text == '1' else unit}"


def format_plan(plan: TransferPlan) -> str:
    lines = [
        f"size:          {_fmt_size(plan.size_bytes)}",
        f"link:          {_fmt_rate(plan.link_bits_per_second)} at utilization {plan.utilization:g}",
        f"online:        {format_duration(plan.days_online * 86400)}",
        f"deadline:      {'none' if plan.deadline_days is None else format_duration(plan.deadline_days * 86400)}"
        f" -> {'met' if plan.meets_deadline else 'NOT met'}",
        f"recommended:   {plan.method}",
    ]
    if plan.datasync_bytes_per_second is not None:
        lines.append(f"bandwidth cap: {plan.datasync_bytes_per_second} bytes/s")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    try:
        plan = plan_transfer(
            args.size, args.link, utilization=args.utilization, deadline=args.deadline,
            public_internet=args.public_internet, long_distance=args.long_distance,
        )
    except (ValueError, ArithmeticError) as exc:
        print(f"plan-transfer: {exc}", file=__import__("sys").stderr)
        return 2
    print(json.dumps(plan.to_dict(), indent=2, allow_nan=False) if args.json else format_plan(plan))
    return 0


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``plan-transfer`` command to an argparse ``subparsers``; its ``func(args)`` returns the exit code."""
    p = subparsers.add_parser(
        "plan-transfer",
        help="estimate online transfer time and recommend DataSync, S3 Transfer Acceleration or physical transfer",
        description=__doc__.split("\n\n")[0],
    )
    # Bounds far above any real transfer (1 EB, 100 Tbps): an absurd value is a usage error, not a plan.
    p.add_argument("--size", required=True, type=parsed("--size", parse_size, minimum=1, maximum=10**18, unit="bytes"),
                   help="data size with an explicit unit: 40TiB, 500GB (at most 1 EB)")
    p.add_argument("--link", required=True, type=parsed("--link", parse_rate, minimum=1, maximum=1e14, unit="bits/s"),
                   help="link speed with an explicit unit: 1Gbps, 125MB/s (1 bps to 100 Tbps)")
    p.add_argument("--utilization", type=number("--utilization", minimum=0, maximum=1, exclusive_minimum=True), default=0.8,
                   help="share of the link the copy may use (0-1]; default 0.8")
    p.add_argument("--deadline", default=None, type=parsed("--deadline", parse_duration, minimum=1, maximum=100 * 365 * 86400,
                                                         unit="seconds"),
                   help="deadline: 36h, 14d, 2w (at most 100 years); default none")
    p.add_argument("--public-internet", action="store_true", help="the data crosses the public internet")
    p.add_argument("--long-distance", action="store_true", help="the source is far from the bucket's region")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=_run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plan-transfer")
    sub = parser.add_subparsers(dest="command", required=True)
    register_cli(sub)
    args = parser.parse_args(["plan-transfer", *(argv or [])])
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(__import__("sys").argv[1:]))
