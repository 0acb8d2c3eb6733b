"""The cost gate on the reference app (issue 16), run by `make test` and by the delivery pipeline's tests.

One synth of the dev app (it carries the delivery pipeline's Dev and Prod stages, so the prod stacks come with
it) feeds every test here:
- every resource type in the app is priced, usage-only or listed as free (else: add a row, see the message);
- dev's idle bill stays within ``cost.max_idle_usd`` of config/platform.yaml, with nothing unknown;
- prod's idle bill stays within ``cost.idle_baseline_usd`` + ``cost.idle_tolerance_percent`` unless the new
  figure is acknowledged (``cost.idle_acknowledged_usd`` + ``cost.idle_acknowledgment``);
- `mlinfra cost` on the synthesized app runs in under 5 s;
- dev keeps every capability while the always-on parts are off or small.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter

import pytest

from mlinfra.domain.cost import estimate, read_assembly, resource_types


@pytest.fixture(scope="module")
def assembly(tmp_path_factory):
    from mlinfra.app import create_app

    outdir = tmp_path_factory.mktemp("cost-dev") / "cdk.out"
    app, _ = create_app(env_name="dev", nag=False, validation=False, outdir=str(outdir))
    app.synth()
    return outdir


@pytest.fixture(scope="module")
def report(assembly):
    return estimate(read_assembly(assembly))


@pytest.fixture(scope="module")
def dev_config(config_file):
    from mlinfra.config import load_config_file

    return load_config_file(config_file, "dev")


def _top(report, n: int = 8) -> str:
    items = sorted(report.items, key=lambda i: -i.idle_usd)[:n]
    return "\n".join(f"  ${i.idle_usd:,.2f}  {i.stack}/{i.logical_id} ({i.type}): {i.detail}" for i in items)


def test_every_resource_type_in_the_reference_app_is_priced_or_listed_as_free(assembly):
    table = resource_types()
    seen: Counter[str] = Counter()
    where: dict[str, str] = {}
    for stack in read_assembly(assembly):
        for lid, resource in (stack.template.get("Resources") or {}).items():
            seen[resource["Type"]] += 1
            where.setdefault(resource["Type"], f"{stack.name}/{lid}")
    missing = sorted(t for t in seen if t not in table)
    assert not missing, (
        "resource types that `mlinfra cost` neither prices nor lists as free:\n"
        + "\n".join(f"  {t} (e.g. {where[t]})" for t in missing)
        + "\nAdd one row per type to mlinfra/data/cost-resource-types.csv: `free` with the reason (configuration, "
          "IAM...), `usage` (billed per request/GB only; add its rate to USAGE_RATES in "
          "mlinfra/domain/cost/pricers.py), or `priced` with a pricer in pricers.PRICERS and its price rows in "
          "mlinfra/data/prices.csv (source URL and date per row). Then check dev's idle budget below.")


def test_dev_idle_cost_is_within_its_budget(report, dev_config):
    dev = report.select(account=dev_config.account)
    budget = dev_config.cost.max_idle_usd
    assert budget is not None and budget <= 150, "dev's idle budget is at most $150/month (issue 16)"
    unknown = "\n".join(f"  {i.stack}/{i.logical_id} ({i.type}): {i.unknown}" for i in dev.unknown)
    assert not dev.unknown, f"dev has resources `mlinfra cost` cannot price:\n{unknown}"
    assert dev.total_idle_usd <= budget, (
        f"dev's idle cost ${dev.total_idle_usd:,.2f}/month is above its budget of ${budget:,.2f} "
        f"(config/platform.yaml environments.dev.cost.max_idle_usd). The largest always-on items:\n{_top(dev)}\n"
        "Make the new resource scale to zero or off in dev (see docs/cost.md, 'A cheap idle dev'), or raise the "
        "budget with the reason in the config.")


def test_prod_idle_cost_is_within_its_recorded_baseline(report, prod_config):
    prod = report.select(account=prod_config.account)
    cost = prod_config.cost
    ceiling = cost.idle_ceiling_usd()
    assert ceiling is not None, "prod records its idle baseline (environments.prod.cost.idle_baseline_usd)"
    assert not prod.unknown, "prod has resources `mlinfra cost` cannot price:\n" + "\n".join(
        f"  {i.stack}/{i.logical_id} ({i.type}): {i.unknown}" for i in prod.unknown)
    assert prod.total_idle_usd <= ceiling + 0.005, (
        f"prod's idle cost rose to ${prod.total_idle_usd:,.2f}/month, more than {cost.idle_tolerance_percent:g} % "
        f"above the recorded baseline of ${cost.idle_baseline_usd:,.2f}. If the increase is intended, acknowledge "
        f"it in config/platform.yaml under environments.prod.cost:\n"
        f"  idle_acknowledged_usd: {prod.total_idle_usd:.2f}\n  idle_acknowledgment: \"<who, when, why>\"\n"
        f"(or re-record idle_baseline_usd). `mlinfra cost --env dev --account {prod_config.account} --diff "
        f"OLD.json` shows what changed. The largest always-on items:\n{_top(prod)}")


def test_prod_baseline_is_current(report, prod_config):
    """The recorded baseline is the figure of today's prod, so the 10 % applies to what runs (a saving must be
    recorded too, or the gate silently allows the savings to be spent)."""
    prod = report.select(account=prod_config.account)
    assert prod.total_idle_usd == pytest.approx(prod_config.cost.idle_baseline_usd, rel=0.10), (
        f"prod's idle cost is ${prod.total_idle_usd:,.2f}/month: record it as environments.prod.cost."
        f"idle_baseline_usd (now {prod_config.cost.idle_baseline_usd})")


def test_cost_command_runs_in_under_5_seconds_after_synth(assembly):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mlinfra.cli", "cost", "--assembly", str(assembly), "--json"],
                         check=True, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - start
    assert json.loads(out)["unknown"] == 0
    assert elapsed < 5.0, f"mlinfra cost took {elapsed:.2f} s"


def test_dev_keeps_every_capability_with_the_always_on_parts_off_or_small(assembly, dev_config):
    stacks = {s.name: s.template for s in read_assembly(assembly) if s.account == dev_config.account}
    def of(stack, type_):
        return [r.get("Properties", {}) for r in stacks[stack]["Resources"].values() if r["Type"] == type_]
    p = dev_config.prefix + "-dev-"
    # off in dev (each documented in config/platform.yaml with what turning it on costs)
    assert of(p + "training", "AWS::FSx::FileSystem") == []
    assert of(p + "ingestion", "AWS::Transfer::Server") == []
    assert [e for e in of(p + "network", "AWS::EC2::VPCEndpoint") if e.get("VpcEndpointType") == "Interface"] == []
    assert of(p + "training", "Custom::PclusterCluster") == []  # Slurm in dev is HyperPod's managed Slurm
    # still there, at zero or at the smallest size
    (hyperpod,) = of(p + "training", "AWS::SageMaker::Cluster")
    assert sorted((g["InstanceType"], g["InstanceCount"]) for g in hyperpod["InstanceGroups"]) == [
        ("ml.p5.48xlarge", 0), ("ml.t3.medium", 1)]
    (ce,) = of(p + "training", "AWS::Batch::ComputeEnvironment")
    assert ce["ComputeResources"]["MinvCpus"] == 0
    floors = sorted(t["MinCapacity"] for t in of(p + "serving", "AWS::ApplicationAutoScaling::ScalableTarget"))
    assert floors == [0, 1]  # the async endpoint scales to zero; the real-time one keeps one small instance
    assert len(of(p + "serving", "AWS::SageMaker::Endpoint")) == 2
    assert of(p + "ingestion", "AWS::DataSync::Task") != []
