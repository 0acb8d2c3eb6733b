"""Price a cloud assembly: every resource of every stack, idle and per use, per stack, per environment.

    report = estimate(read_assembly("cdk.out"))
    report.total_idle_usd, report.unknown, report.to_json()

Pure Python (no aws_cdk import): a synthesized assembly of 40 stacks prices in well under a second.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from mlinfra.domain.cost.assembly import AssemblyStack
from mlinfra.domain.cost.prices import HOURS_PER_MONTH, MissingPrice, PriceTable
from mlinfra.domain.cost.pricers import PRICERS, Context, NotLiteral, Rate, usage_only

__all__ = ["LineItem", "Report", "TypeTreatment", "resource_types", "price_template", "estimate", "diff",
           "REPORT_VERSION"]

REPORT_VERSION = 1
TYPES_RESOURCE = "cost-resource-types.csv"


@dataclasses.dataclass(frozen=True)
class TypeTreatment:
    type: str
    treatment: str  # priced | usage | free
    reason: str


@functools.lru_cache(maxsize=1)
def resource_types() -> dict[str, TypeTreatment]:
    """The shipped table of how each CloudFormation type is treated (``mlinfra/data/cost-resource-types.csv``)."""
    text = resources.files("mlinfra.data").joinpath(TYPES_RESOURCE).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    table = {}
    for rec in csv.DictReader(lines):
        if rec["treatment"] not in ("priced", "usage", "free"):
            raise ValueError(f"{TYPES_RESOURCE}: treatment of {rec['type']} must be priced, usage or free, "
                             f"got: {rec['treatment']!r}")
        table[rec["type"]] = TypeTreatment(rec["type"], rec["treatment"], rec["reason"])
    return table


def unknown_type_reason(type_name: str) -> str:
    return (f"{type_name} is not in mlinfra/data/cost-resource-types.csv: add a row (priced with a pricer in "
            f"mlinfra/domain/cost/pricers.py, usage with its per-use rate, or free with the reason)")


@dataclasses.dataclass
class LineItem:
    environment: str
    stack: str
    logical_id: str
    type: str
    idle_usd: float
    detail: str = ""
    per_use: list[Rate] = dataclasses.field(default_factory=list)
    unknown: str | None = None
    path: str = ""
    keys: list[str] = dataclasses.field(default_factory=list)

    @property
    def ident(self) -> str:
        return f"{self.environment}|{self.stack}|{self.logical_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "logical_id": self.logical_id, "type": self.type, "path": self.path,
            "idle_usd_month": round(self.idle_usd, 2), "detail": self.detail, "unknown": self.unknown,
            "per_use": [dataclasses.asdict(r) | {"usd": round(r.usd, 6)} for r in self.per_use],
            "price_keys": self.keys,
        }


def price_template(template: dict[str, Any], *, stack: str, region: str, prices: PriceTable,
                   environment: str = "", directory: Path | None = None,
                   usage: dict[str, Any] | None = None) -> list[LineItem]:
    """Line items for every resource of one template that is priced, usage-only or unknown (free ones are
    counted by the caller, not listed)."""
    types = resource_types()
    items: list[LineItem] = []
    for lid, resource in (template.get("Resources") or {}).items():
        rtype = resource.get("Type", "?")
        treatment = types.get(rtype)
        path = (resource.get("Metadata") or {}).get("aws:cdk:path", "")
        if treatment is not None and treatment.treatment == "free":
            continue
        item = LineItem(environment, stack, lid, rtype, 0.0, path=path)
        if treatment is None:
            item.unknown = unknown_type_reason(rtype)
            items.append(item)
            continue
        pricer = PRICERS.get(rtype) if treatment.treatment == "priced" else usage_only
        if pricer is None:
            item.unknown = f"{rtype} is marked priced in {TYPES_RESOURCE} but has no pricer in pricers.PRICERS"
            items.append(item)
            continue
        ctx = Context(template=template, region=region, prices=prices, stack=stack, directory=directory,
                      usage=usage or {}, price_nested=price_template)
        try:
            priced = pricer(ctx, lid, resource)
        except (NotLiteral, MissingPrice) as exc:
            item.unknown = str(exc)
        else:
            item.idle_usd, item.detail, item.per_use, item.unknown = (priced.idle_usd, priced.detail,
                                                                      priced.per_use, priced.unknown)
        item.keys = list(ctx.keys)
        items.append(item)
    return items


@dataclasses.dataclass
class Report:
    items: list[LineItem]
    free_resources: int
    stacks: list[tuple[str, str]]  # (environment, stack) in assembly order
    price_origin: str
    price_dates: tuple[str, str]

    @property
    def total_idle_usd(self) -> float:
        return sum(i.idle_usd for i in self.items)

    @property
    def unknown(self) -> list[LineItem]:
        return [i for i in self.items if i.unknown]

    def environments(self) -> list[str]:
        return list(dict.fromkeys(env for env, _ in self.stacks))

    def idle_by_environment(self) -> dict[str, float]:
        out = {env: 0.0 for env in self.environments()}
        for i in self.items:
            out[i.environment] = out.get(i.environment, 0.0) + i.idle_usd
        return out

    def idle_by_stack(self) -> dict[tuple[str, str], float]:
        out = {key: 0.0 for key in self.stacks}
        for i in self.items:
            out[(i.environment, i.stack.split("/")[0])] = out.get((i.environment, i.stack.split("/")[0]), 0.0) + i.idle_usd
        return out

    def select(self, *, account: str | None = None, environment: str | None = None) -> "Report":
        """The part of the report deployed to one account (``111111111111``) or environment (``aws://a/r``)."""
        def keep(env: str) -> bool:
            return (account is None or env.removeprefix("aws://").split("/")[0] == account) and \
                (environment is None or env == environment)
        return Report([i for i in self.items if keep(i.environment)], self.free_resources,
                      [s for s in self.stacks if keep(s[0])], self.price_origin, self.price_dates)

    def to_json(self) -> dict[str, Any]:
        by_stack = self.idle_by_stack()
        envs = []
        for env, idle in self.idle_by_environment().items():
            stacks = []
            for (e, name), stack_idle in by_stack.items():
                if e != env:
                    continue
                items = [i for i in self.items if i.environment == env and i.stack.split("/")[0] == name]
                stacks.append({"stack": name, "idle_usd_month": round(stack_idle, 2),
                               "unknown": sum(1 for i in items if i.unknown),
                               "resources": [i.to_dict() for i in items]})
            envs.append({"environment": env, "idle_usd_month": round(idle, 2),
                         "unknown": sum(1 for i in self.items if i.environment == env and i.unknown),
                         "stacks": stacks})
        return {
            "version": REPORT_VERSION,
            "hours_per_month": HOURS_PER_MONTH,
            "price_table": {"origin": self.price_origin, "oldest": self.price_dates[0], "newest": self.price_dates[1]},
            "idle_usd_month": round(self.total_idle_usd, 2),
            "unknown": len(self.unknown),
            "free_resources": self.free_resources,
            "environments": envs,
        }


def estimate(stacks: Iterable[AssemblyStack], *, prices: PriceTable | None = None, default_region: str = "us-east-1",
             usage: dict[str, Any] | None = None) -> Report:
    """Price every stack. An environment-agnostic stack is priced in ``default_region``."""
    prices = prices or PriceTable.shipped()
    types = resource_types()
    items: list[LineItem] = []
    free = 0
    order: list[tuple[str, str]] = []
    for stack in stacks:
        region = stack.region if not stack.region.startswith("unknown") else default_region
        order.append((stack.environment, stack.name))
        resources_ = (stack.template.get("Resources") or {}).values()
        free += sum(1 for r in resources_ if (types.get(r.get("Type", "")) or TypeTreatment("", "", "")).treatment == "free")
        items += price_template(stack.template, stack=stack.name, region=region, prices=prices,
                                environment=stack.environment, directory=stack.directory, usage=usage)
    return Report(items, free, order, prices.origin, prices.dates())


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Resource-by-resource idle changes between two ``--json`` reports: added, removed and changed items,
    largest change first."""
    def flatten(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out = {}
        for env in report.get("environments", []):
            for stack in env.get("stacks", []):
                for r in stack.get("resources", []):
                    out[f"{env['environment']}|{r['stack']}|{r['logical_id']}"] = r | {"environment": env["environment"]}
        return out

    before, after = flatten(old), flatten(new)
    changes = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        b_usd = b["idle_usd_month"] if b else 0.0
        a_usd = a["idle_usd_month"] if a else 0.0
        if abs(a_usd - b_usd) < 0.005 and (b or {}).get("unknown") == (a or {}).get("unknown"):
            continue  # same idle cost (per-use-only resources added or removed are not idle changes)
        ref = a or b
        changes.append({
            "change": "added" if b is None else "removed" if a is None else "changed",
            "environment": ref["environment"], "stack": ref["stack"], "logical_id": ref["logical_id"],
            "type": ref["type"], "before_usd_month": round(b_usd, 2), "after_usd_month": round(a_usd, 2),
            "delta_usd_month": round(a_usd - b_usd, 2), "detail": ref.get("detail", ""),
            "unknown": (a or {}).get("unknown"),
        })
    changes.sort(key=lambda c: (-abs(c["delta_usd_month"]), c["stack"], c["logical_id"]))
    return changes
