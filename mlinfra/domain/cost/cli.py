"""``mlinfra cost``: what a CDK app costs idle and per use, from its cloud assembly.

    mlinfra cost                                # ./cdk.out, or synthesize the app in . first
    mlinfra cost --assembly cdk.out --json > cost.json
    mlinfra cost --env dev --account 111111111111 --max-idle 150
    mlinfra cost --diff main-cost.json          # what this change adds or saves, resource by resource
    mlinfra cost --refresh --save-prices prices.csv   # current prices from the AWS Price List API

Exit codes: 0 ok; 1 above ``--max-idle`` (or unknown resources under a budget); 2 usage errors.
Reading and pricing never import aws_cdk; only synthesizing runs the app (its own command, from cdk.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlinfra.domain.cli_args import number
from mlinfra.domain.cost.assembly import read_assembly
from mlinfra.domain.cost.estimate import Report, diff, estimate
from mlinfra.domain.cost.prices import PriceTable

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CATEGORY_ORDER = ("training", "inference", "ingestion", "storage", "network", "logs", "delivery", "other")


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cost", help="estimate what the app costs idle and per use (from cdk.out or a fresh synth)",
        description="Price every resource of a CDK cloud assembly (nested stage assemblies included) from the "
                    "shipped, dated price table: the idle cost per month (what runs with no traffic and no jobs) "
                    "per stack and environment, per-use rates (per node-hour, per 1M inferences, per GB), and "
                    "every resource it cannot price as unknown with the reason.")
    p.add_argument("--assembly", type=Path, help="a synthesized cloud assembly (default: APP_DIR/cdk.out if present, "
                                                 "else synthesize the app)")
    p.add_argument("--app-dir", type=Path, default=Path("."), help="the CDK app (its cdk.json) to synthesize")
    p.add_argument("--synth", action="store_true", help="synthesize even if cdk.out exists")
    p.add_argument("--env", help="shortcut for -c mlinfra:env=ENV (synthesizes)")
    p.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                   help="context for the synth, as `cdk synth -c`")
    p.add_argument("--account", help="report only the stacks deployed to this account")
    p.add_argument("--environment", help="report only this environment (aws://ACCOUNT/REGION)")
    p.add_argument("--region", default="us-east-1", help="Region for environment-agnostic stacks (default us-east-1)")
    p.add_argument("--prices", type=Path, help="a price table CSV instead of the shipped one")
    p.add_argument("--usage", type=Path, help="usage assumptions (YAML/JSON), e.g. logs_gb_per_month: {'*/FlowLogs*': 5}")
    p.add_argument("--refresh", action="store_true", help="read current prices from the AWS Price List API "
                                                          "(needs credentials; falls back to the table per row)")
    p.add_argument("--save-prices", type=Path, help="with --refresh: write the refreshed table here")
    p.add_argument("--diff", type=Path, metavar="OLD.json", help="compare with an earlier --json report")
    p.add_argument("--max-idle", type=number("--max-idle", minimum=0, maximum=1e12), metavar="USD", help="exit 1 when the idle cost per month is above USD "
                                                                 "(or when a resource is unknown)")
    p.add_argument("--allow-unknown", action="store_true", help="with --max-idle: do not fail on unknown resources")
    p.add_argument("--per-use", action="store_true", help="list every per-use rate in the text output")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        prices = PriceTable.from_file(args.prices) if args.prices else PriceTable.shipped()
    except (OSError, ValueError) as exc:
        return _fail(args, f"--prices: {exc}")
    if args.refresh:
        from mlinfra.domain.cost.refresh import refresh_table

        prices, notes = refresh_table(prices, regions={args.region})
        for note in notes:
            print(f"mlinfra cost: {note}", file=sys.stderr)
        if args.save_prices:
            args.save_prices.write_text(prices.to_csv())
    usage: dict[str, Any] = {}
    if args.usage:
        try:
            usage = _load_mapping(args.usage)
        except (OSError, ValueError) as exc:
            return _fail(args, f"--usage: {exc}")
    try:
        assembly = _assembly(args)
        report = estimate(read_assembly(assembly), prices=prices, default_region=args.region, usage=usage)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        return _fail(args, str(exc), EXIT_FAILED)
    if args.account or args.environment:
        report = report.select(account=args.account, environment=args.environment)
    data = report.to_json()
    changes = None
    if args.diff:
        try:
            old = json.loads(args.diff.read_text())
        except (OSError, ValueError) as exc:
            return _fail(args, f"--diff: {exc}")
        if args.account or args.environment:  # compare like with like
            old = _select_json(old, args.account, args.environment)
        changes = diff(old, data)
        data["diff"] = {"against": str(args.diff), "idle_change_usd_month": round(data["idle_usd_month"] -
                        float(old.get("idle_usd_month", 0.0)), 2), "changes": changes}
    code = EXIT_OK
    verdict = ""
    if args.max_idle is not None:
        over = report.total_idle_usd > args.max_idle
        blocked = bool(report.unknown) and not args.allow_unknown
        code = EXIT_FAILED if over or blocked else EXIT_OK
        verdict = (f"idle ${report.total_idle_usd:,.2f}/month is above the budget of ${args.max_idle:,.2f}" if over else
                   f"{len(report.unknown)} resource(s) unknown: the budget check cannot pass (--allow-unknown to "
                   f"accept)" if blocked else
                   f"idle ${report.total_idle_usd:,.2f}/month is within the budget of ${args.max_idle:,.2f}")
        data["budget"] = {"max_idle_usd": args.max_idle, "ok": code == EXIT_OK, "message": verdict}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(format_text(report, per_use=args.per_use))
        if changes is not None:
            print(format_diff(data["diff"]))
        if verdict:
            print(("OK: " if code == EXIT_OK else "FAIL: ") + verdict)
    return code


def _select_json(report: dict[str, Any], account: str | None, environment: str | None) -> dict[str, Any]:
    envs = [e for e in report.get("environments", [])
            if (account is None or e["environment"].removeprefix("aws://").split("/")[0] == account)
            and (environment is None or e["environment"] == environment)]
    return {**report, "environments": envs, "idle_usd_month": round(sum(e["idle_usd_month"] for e in envs), 2)}


def _assembly(args: argparse.Namespace) -> Path:
    if args.assembly:
        return args.assembly
    default = args.app_dir / "cdk.out"
    if not args.synth and not args.env and not args.context and (default / "manifest.json").is_file():
        return default
    context = dict(c.split("=", 1) for c in args.context if "=" in c)
    if args.env:
        context["mlinfra:env"] = args.env
    return synthesize(args.app_dir, context)


def synthesize(app_dir: Path, context: dict[str, str]) -> Path:
    """Run the app's own command (``app`` in cdk.json) into a fresh assembly directory, as ``cdk synth`` does:
    ``CDK_OUTDIR`` and ``CDK_CONTEXT_JSON`` (cdk.json's context, then ``context``)."""
    cdk_json = app_dir / "cdk.json"
    if not cdk_json.is_file():
        raise FileNotFoundError(f"{app_dir}: no cdk.json to synthesize (pass --assembly DIR)")
    settings = json.loads(cdk_json.read_text())
    outdir = Path(tempfile.mkdtemp(prefix="mlinfra-cost-"))
    env = {**os.environ, "CDK_OUTDIR": str(outdir),
           "CDK_CONTEXT_JSON": json.dumps({**(settings.get("context") or {}), **context})}
    env.setdefault("CDK_VALIDATION", "false")
    subprocess.run(shlex.split(settings["app"]), cwd=app_dir, env=env, check=True, stdout=sys.stderr)
    return outdir


def _load_mapping(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping, got: {type(data).__name__}")
    return data


def format_text(report: Report, *, per_use: bool = False) -> str:
    lines = [f"Idle cost per month (730 h, on-demand list prices, {report.price_origin} dated "
             f"{report.price_dates[0]}..{report.price_dates[1]}; no free tier, no discounts)", ""]
    by_stack = report.idle_by_stack()
    for env, idle in report.idle_by_environment().items():
        lines.append(f"{env}: ${idle:,.2f}/month idle")
        for (e, name), usd in by_stack.items():
            if e != env:
                continue
            items = sorted((i for i in report.items if i.environment == env and i.stack.split("/")[0] == name),
                           key=lambda i: -i.idle_usd)
            unknown = sum(1 for i in items if i.unknown)
            lines.append(f"  {name:<40} ${usd:>11,.2f}" + (f"   ({unknown} unknown)" if unknown else ""))
            for i in items:
                if i.idle_usd >= 0.005:
                    lines.append(f"      ${i.idle_usd:>10,.2f}  {i.logical_id} ({i.type}): {i.detail}")
        lines.append("")
    if report.unknown:
        lines.append(f"UNKNOWN ({len(report.unknown)}): not in the totals above")
        for i in report.unknown:
            lines.append(f"  {i.stack}/{i.logical_id} ({i.type}): {i.unknown}")
        lines.append("")
    lines.append("Per use (on top of idle):")
    seen: dict[tuple[str, str], float] = {}
    for category in CATEGORY_ORDER:
        rates = [(i, r) for i in report.items for r in i.per_use if r.category == category]
        if not rates:
            continue
        shown = []
        for i, r in rates:
            key = (r.what, r.unit)
            if per_use or key not in seen:
                shown.append(f"    ${r.usd:,.4g} per {r.unit}: {r.what}" + (f"  [{i.stack}/{i.logical_id}]" if per_use else ""))
                seen[key] = r.usd
        lines.append(f"  {category}:")
        lines += shown
    lines.append(f"\n{len(report.items)} priced or per-use resources, {report.free_resources} free (configuration), "
                 f"{len(report.unknown)} unknown; total idle ${report.total_idle_usd:,.2f}/month")
    return "\n".join(lines)


def format_diff(d: dict[str, Any]) -> str:
    lines = [f"\nChange against {d['against']}: {d['idle_change_usd_month']:+,.2f} USD/month idle"]
    for c in d["changes"]:
        lines.append(f"  {c['delta_usd_month']:+10,.2f}  {c['change']:<7} {c['stack']}/{c['logical_id']} ({c['type']})"
                     + (f": {c['detail']}" if c["detail"] else "") + (f"  UNKNOWN: {c['unknown']}" if c["unknown"] else ""))
    if not d["changes"]:
        lines.append("  no resource changed its idle cost")
    return "\n".join(lines)


def _fail(args: argparse.Namespace, message: str, code: int = EXIT_USAGE) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    else:
        print(f"mlinfra cost: error: {message}", file=sys.stderr)
    return code
