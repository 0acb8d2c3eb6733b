"""Size an FSx for Lustre cache for a GPU training job: deployment type, capacity and per-unit throughput.

Pure Python (no aws_cdk import): the ``mlinfra size-cache`` command and :class:`mlinfra.constructs.lustre_cache.
LustreCache` (``plan=``) both use it.

The arithmetic
--------------
1. **Demand.** Every GPU reads ``per_gpu_read_mbps`` MB/s, so the file system must serve
   ``demand = gpu_count x per_gpu_read_mbps`` MB/s in aggregate.
2. **Throughput of a file system.** FSx for Lustre scales throughput with storage:
   ``aggregate MB/s = capacity (TiB) x per-unit throughput (MB/s/TiB)``, with ``TiB = GiB / 1024``.
   Per-unit choices (FACTS.md): PERSISTENT_2 125/250/500/1000, PERSISTENT_1 (SSD) 50/100/200, SCRATCH_2 200
   (its baseline; the 1300 MB/s/TiB burst is not counted on).
3. **Capacity for throughput.** For one (type, per-unit) option the capacity that meets the demand is
   ``demand / per_unit x 1024`` GiB.
4. **Capacity for the data.** The dataset must fit with free space left:
   ``dataset_gib / (1 - free_space_fraction)`` GiB (10 % free by default; LZ4 compression is not counted on).
5. **Allowed sizes.** SCRATCH_2, PERSISTENT_1 (SSD) and PERSISTENT_2 take 1200 GiB, then multiples of
   2400 GiB. The larger of (3) and (4) is rounded UP to the next allowed size.
6. **Cost.** ``monthly cost = capacity GiB x price per GiB-month`` of that option, from a dated
   :class:`PriceTable` (prices change by region and over time: they are an input, never constants in the
   logic). The option with the lowest cost wins; ties go to the smaller capacity, then the higher throughput.

Worked example: 64 GPUs reading 200 MB/s each from a 10 TiB (10240 GiB) dataset.
Demand = 64 x 200 = 12 800 MB/s. Data needs 10240 / 0.9 = 11 378 GiB -> 12 000 GiB.
PERSISTENT_2 at 125: 12800 / 125 x 1024 = 104 858 GiB -> 105 600 GiB; x 0.145 = $15 312/month.
PERSISTENT_2 at 1000: 12800 / 1000 x 1024 = 13 107 GiB -> 14 400 GiB; x 0.600 = $8 640/month.
PERSISTENT_2 at 500: 26 214 GiB -> 26 400 GiB; x 0.340 = $8 976. SCRATCH_2 at 200: 65 536 -> 67 200 GiB;
x 0.140 = $9 408. The plan is PERSISTENT_2, 14 400 GiB at 1000 MB/s/TiB (14 062 MB/s aggregate).

Billing is per GB-month of provisioned capacity; capacities here are GiB as FSx takes them. Both scale the
same way, so the choice of the cheapest option does not depend on the unit. Metadata IOPS, backups and data
transfer are not part of the comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from mlinfra.domain.cli_args import number

__all__ = [
    "CachePlan",
    "PriceTable",
    "DEFAULT_PRICES",
    "PER_UNIT_THROUGHPUT",
    "DEPLOYMENT_TYPES",
    "aggregate_throughput_mbps",
    "round_up_capacity",
    "valid_capacity",
    "capacity_errors",
    "plan_cache",
    "register_cli",
]

#: Deployment types the sizing and the construct support (SCRATCH_1 is the previous generation).
DEPLOYMENT_TYPES: tuple[str, ...] = ("SCRATCH_2", "PERSISTENT_1", "PERSISTENT_2")

#: Allowed per-unit storage throughput (MB/s/TiB) per deployment type, SSD storage (FACTS.md; FSx API).
PER_UNIT_THROUGHPUT: dict[str, tuple[int, ...]] = {
    "SCRATCH_2": (200,),
    "PERSISTENT_1": (50, 100, 200),
    "PERSISTENT_2": (125, 250, 500, 1000),
}

#: Capacity rule per deployment type: (first size, increment) in GiB: first size, then multiples of the
#: increment (FACTS.md; the FSx CreateFileSystem StorageCapacity rules for SSD).
CAPACITY_RULES: dict[str, tuple[int, int]] = {
    "SCRATCH_2": (1200, 2400),
    "PERSISTENT_1": (1200, 2400),
    "PERSISTENT_2": (1200, 2400),
}

GIB_PER_TIB = 1024


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """Storage prices of FSx for Lustre options, in USD per GB-month, for one region at one date."""

    region: str
    #: The date the prices were read (ISO 8601).
    as_of: str
    #: Where they were read.
    source: str
    #: ``(deployment type, per-unit throughput) -> USD per GB-month``.
    usd_per_gb_month: Mapping[tuple[str, int], float]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PriceTable":
        """From ``{"region", "as_of", "source", "prices": [{"deployment_type", "per_unit_throughput",
        "usd_per_gb_month"}]}`` (the ``--prices`` file of the CLI)."""
        try:
            prices = {
                (str(p["deployment_type"]), int(p["per_unit_throughput"])): float(p["usd_per_gb_month"])
                for p in data["prices"]
            }
            table = cls(region=str(data["region"]), as_of=str(data["as_of"]), source=str(data.get("source", "")),
                        usd_per_gb_month=prices)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                "prices must be {region, as_of, source, prices: [{deployment_type, per_unit_throughput, "
                f"usd_per_gb_month}}]}}, got an error: {exc!r}"
            ) from None
        table.validate()
        return table

    def validate(self) -> None:
        errors = []
        for (dtype, per_unit), price in self.usd_per_gb_month.items():
            if per_unit not in PER_UNIT_THROUGHPUT.get(dtype, ()):
                errors.append(f"unknown option {dtype} at {per_unit} MB/s/TiB")
            if not price > 0:
                errors.append(f"price of {dtype}/{per_unit} must be > 0, got: {price}")
        if errors:
            raise ValueError("prices: " + "; ".join(errors))


#: us-east-1 list prices of SSD storage (USD per GB-month) as read from https://aws.amazon.com/fsx/lustre/pricing/
#: on the date below. Re-read them for another region or date and pass your own table (``--prices``).
DEFAULT_PRICES = PriceTable(
    region="us-east-1",
    as_of="2025-06-01",
    source="https://aws.amazon.com/fsx/lustre/pricing/ (SSD storage, us-east-1)",
    usd_per_gb_month={
        ("SCRATCH_2", 200): 0.140,
        ("PERSISTENT_1", 50): 0.145,
        ("PERSISTENT_1", 100): 0.210,
        ("PERSISTENT_1", 200): 0.290,
        ("PERSISTENT_2", 125): 0.145,
        ("PERSISTENT_2", 250): 0.210,
        ("PERSISTENT_2", 500): 0.340,
        ("PERSISTENT_2", 1000): 0.600,
    },
)


@dataclasses.dataclass(frozen=True)
class CachePlan:
    """A sized file system: what to create and why."""

    deployment_type: str
    storage_capacity_gib: int
    per_unit_storage_throughput: int
    #: capacity TiB x per-unit throughput, MB/s.
    aggregate_throughput_mbps: float
    #: gpu_count x per-GPU read rate, MB/s.
    demand_mbps: float
    dataset_gib: float
    monthly_storage_cost_usd: float
    prices_as_of: str
    prices_region: str
    #: The arithmetic, one line per step, for people.
    explanation: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["explanation"] = list(self.explanation)
        return out


def aggregate_throughput_mbps(storage_capacity_gib: float, per_unit_throughput: float) -> float:
    """``capacity (TiB) x per-unit throughput (MB/s/TiB)``."""
    return storage_capacity_gib / GIB_PER_TIB * per_unit_throughput


def valid_capacity(deployment_type: str, storage_capacity_gib: int) -> bool:
    first, step = CAPACITY_RULES[deployment_type]
    return storage_capacity_gib == first or (storage_capacity_gib > 0 and storage_capacity_gib % step == 0)


def round_up_capacity(deployment_type: str, needed_gib: float) -> int:
    """The smallest allowed capacity (GiB) of ``deployment_type`` that holds ``needed_gib``."""
    first, step = CAPACITY_RULES[deployment_type]
    if needed_gib <= first:
        return first
    return int(math.ceil(needed_gib / step - 1e-9)) * step


def capacity_errors(deployment_type: str, storage_capacity_gib: int) -> list[str]:
    """Problems of a capacity for a deployment type (empty when it is allowed)."""
    if deployment_type not in CAPACITY_RULES:
        return [f"deployment type must be one of {list(CAPACITY_RULES)}, got: {deployment_type}"]
    if valid_capacity(deployment_type, storage_capacity_gib):
        return []
    first, step = CAPACITY_RULES[deployment_type]
    return [
        f"storage_capacity_gib must be {first} or a multiple of {step} GiB for {deployment_type}, "
        f"got: {storage_capacity_gib} (nearest allowed above: {round_up_capacity(deployment_type, storage_capacity_gib)})"
    ]


def _validate_inputs(gpu_count: int, per_gpu_read_mbps: float, dataset_gib: float, free_space_fraction: float,
                     deployment_types: Sequence[str]) -> None:
    errors = []
    if not isinstance(gpu_count, int) or isinstance(gpu_count, bool) or gpu_count < 1:
        errors.append(f"gpu_count must be a positive integer, got: {gpu_count!r}")
    if not per_gpu_read_mbps > 0:
        errors.append(f"per_gpu_read_mbps must be > 0 MB/s, got: {per_gpu_read_mbps!r}")
    if not dataset_gib >= 0:
        errors.append(f"dataset_gib must be >= 0 GiB, got: {dataset_gib!r}")
    if not 0 <= free_space_fraction < 1:
        errors.append(f"free_space_fraction must be in [0, 1), got: {free_space_fraction!r}")
    bad = [t for t in deployment_types if t not in DEPLOYMENT_TYPES]
    if bad or not deployment_types:
        errors.append(f"deployment_types must be a non-empty subset of {list(DEPLOYMENT_TYPES)}, got: {list(deployment_types)}")
    if errors:
        raise ValueError("; ".join(errors))


def plan_cache(
    gpu_count: int,
    per_gpu_read_mbps: float,
    dataset_gib: float,
    *,
    deployment_types: Sequence[str] = ("SCRATCH_2", "PERSISTENT_2"),
    free_space_fraction: float = 0.1,
    prices: PriceTable = DEFAULT_PRICES,
) -> CachePlan:
    """The cheapest file system that serves ``gpu_count x per_gpu_read_mbps`` MB/s and holds the dataset.

    ``deployment_types``: the types to consider (SCRATCH_2 is not replicated: lose a server, lose its data;
    pass ``("PERSISTENT_2",)`` for a durable cache). Raises ``ValueError`` on bad inputs or when the price table
    has no option of the types asked for. See the module docstring for the arithmetic.
    """
    _validate_inputs(gpu_count, per_gpu_read_mbps, dataset_gib, free_space_fraction, deployment_types)
    prices.validate()
    demand = gpu_count * per_gpu_read_mbps
    for_data = dataset_gib / (1 - free_space_fraction)
    candidates: list[tuple[float, int, int, str, float, float]] = []
    for dtype in deployment_types:
        for per_unit in PER_UNIT_THROUGHPUT[dtype]:
            price = prices.usd_per_gb_month.get((dtype, per_unit))
            if price is None:
                continue
            for_throughput = demand / per_unit * GIB_PER_TIB
            capacity = round_up_capacity(dtype, max(for_data, for_throughput))
            candidates.append((capacity * price, capacity, -per_unit, dtype, for_throughput, price))
    if not candidates:
        raise ValueError(
            f"prices ({prices.region}, {prices.as_of}) have no option of deployment_types {list(deployment_types)}"
        )
    cost, capacity, neg_per_unit, dtype, for_throughput, price = min(candidates)
    per_unit = -neg_per_unit
    aggregate = aggregate_throughput_mbps(capacity, per_unit)
    explanation = (
        f"demand = {gpu_count} GPUs x {per_gpu_read_mbps:g} MB/s = {demand:g} MB/s",
        f"data needs {dataset_gib:g} GiB / (1 - {free_space_fraction:g}) = {for_data:.0f} GiB",
        f"throughput needs {demand:g} / {per_unit} MB/s/TiB x 1024 = {for_throughput:.0f} GiB",
        f"rounded up to an allowed {dtype} size: {capacity} GiB "
        f"({CAPACITY_RULES[dtype][0]}, then multiples of {CAPACITY_RULES[dtype][1]})",
        f"aggregate = {capacity} / 1024 TiB x {per_unit} = {aggregate:.0f} MB/s",
        f"cost = {capacity} GiB x ${price}/GB-month = ${cost:,.2f}/month "
        f"(prices {prices.region} as of {prices.as_of}); cheapest of {len(candidates)} option(s)",
    )
    return CachePlan(
        deployment_type=dtype,
        storage_capacity_gib=capacity,
        per_unit_storage_throughput=per_unit,
        aggregate_throughput_mbps=aggregate,
        demand_mbps=demand,
        dataset_gib=dataset_gib,
        monthly_storage_cost_usd=round(cost, 2),
        prices_as_of=prices.as_of,
        prices_region=prices.region,
        explanation=explanation,
    )


# --------------------------------------------------------------------------------------------------
# CLI: `mlinfra size-cache`
# --------------------------------------------------------------------------------------------------


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``size-cache`` subcommand to the ``mlinfra`` command's subparsers."""
    parser = subparsers.add_parser(
        "size-cache",
        help="size an FSx for Lustre cache for a GPU job (type, capacity, throughput, cost)",
        description="Print the cheapest FSx for Lustre file system that serves GPUS x PER_GPU_MBPS MB/s and holds "
                    "the dataset, with the arithmetic. Prices come from a dated table (--prices to pass your own).",
    )
    # Bounds far above any real job (and finite): an absurd or overflowing value is a usage error, not a plan.
    parser.add_argument("--gpus", type=number("--gpus", minimum=1, maximum=1_000_000, integer=True), required=True,
                        help="GPUs reading at once (1-1,000,000)")
    parser.add_argument("--per-gpu-mbps", type=number("--per-gpu-mbps", minimum=0, maximum=1_000_000, exclusive_minimum=True),
                        required=True, help="read rate of one GPU, MB/s")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--dataset-gib", type=number("--dataset-gib", minimum=0, maximum=1e9, exclusive_minimum=True),
                      help="dataset size, GiB")
    size.add_argument("--dataset-tib", type=number("--dataset-tib", minimum=0, maximum=1e6, exclusive_minimum=True),
                      help="dataset size, TiB")
    parser.add_argument("--types", nargs="+", choices=DEPLOYMENT_TYPES, default=["SCRATCH_2", "PERSISTENT_2"],
                        help="deployment types to consider (default: SCRATCH_2 PERSISTENT_2)")
    parser.add_argument("--free-space", type=number("--free-space", minimum=0, maximum=0.95), default=0.1,
                        help="fraction of capacity kept free (0-0.95, default 0.1)")
    parser.add_argument("--prices", type=Path, help="a JSON price table (see PriceTable.from_dict)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.set_defaults(func=run_cli)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """``size-cache``: 0 with the plan printed, 2 on bad input (message on stderr, or JSON ``error``)."""
    try:
        prices = DEFAULT_PRICES
        if args.prices is not None:
            prices = PriceTable.from_dict(json.loads(Path(args.prices).read_text()))
        dataset = args.dataset_gib if args.dataset_gib is not None else args.dataset_tib * GIB_PER_TIB
        plan = plan_cache(args.gpus, args.per_gpu_mbps, dataset, deployment_types=tuple(args.types),
                          free_space_fraction=args.free_space, prices=prices)
    except (ValueError, OSError, ArithmeticError) as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        else:
            print(f"mlinfra size-cache: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, allow_nan=False))
    else:
        print(f"{plan.deployment_type}, {plan.storage_capacity_gib} GiB at {plan.per_unit_storage_throughput} "
              f"MB/s/TiB: {plan.aggregate_throughput_mbps:.0f} MB/s for a demand of {plan.demand_mbps:g} MB/s, "
              f"${plan.monthly_storage_cost_usd:,.2f}/month")
        for line in plan.explanation:
            print(f"  {line}")
    return 0


def main(argv: Iterable[str] | None = None) -> int:  # pragma: no cover - convenience entry point
    parser = argparse.ArgumentParser(prog="mlinfra")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv) if argv is not None else None)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
