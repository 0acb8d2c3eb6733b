"""One pricer per priced CloudFormation resource type: what a resource costs while idle (no traffic, no jobs)
and what it costs per use (per node-hour of training, per million inferences, per GB ingested).

A pricer reads only the synthesized template. A value it needs that is not a literal at synth time (an
instance type from an import, a capacity from a parameter without default) or a price the table lacks makes
the resource *unknown*, with the reason, never $0. Which types are priced, free or usage-only is the table
``mlinfra/data/cost-resource-types.csv``. Pure Python (no aws_cdk import).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import re
from pathlib import Path
from typing import Any, Callable

from mlinfra.domain.cost.prices import HOURS_PER_MONTH, MissingPrice, PriceTable

__all__ = ["Rate", "Priced", "Context", "NotLiteral", "PRICERS", "USAGE_RATES"]


@dataclasses.dataclass(frozen=True)
class Rate:
    """A per-use price: ``usd`` per ``unit`` of ``what`` (category: training, inference, ingestion, storage,
    network, logs, delivery, other)."""

    what: str
    usd: float
    unit: str
    category: str


@dataclasses.dataclass
class Priced:
    idle_usd: float = 0.0
    detail: str = ""
    per_use: list[Rate] = dataclasses.field(default_factory=list)
    unknown: str | None = None
    keys: list[str] = dataclasses.field(default_factory=list)


class NotLiteral(ValueError):
    """A property the pricer needs is not known at synth time."""


@dataclasses.dataclass
class Context:
    """What a pricer may read: the stack's template and Region, the price table and usage assumptions."""

    template: dict[str, Any]
    region: str
    prices: PriceTable
    stack: str
    directory: Path | None = None
    usage: dict[str, Any] = dataclasses.field(default_factory=dict)
    keys: list[str] = dataclasses.field(default_factory=list)
    #: Prices a nested stack's template (``estimate.price_template``, passed in so this module never imports the
    #: estimator that imports it). :default: None (nested stacks cannot be priced)
    price_nested: Callable[..., list[Any]] | None = None

    def price(self, key: str) -> float:
        p = self.prices.require(key, self.region)
        if key not in self.keys:
            self.keys.append(key)
        return p.usd

    def optional_price(self, key: str) -> float | None:
        try:
            return self.price(key)
        except MissingPrice:
            return None

    def literal(self, value: Any, what: str) -> Any:
        """``value`` itself, a ``Ref`` to a parameter with a default resolved; anything else raises NotLiteral."""
        if isinstance(value, dict) and set(value) == {"Ref"}:
            param = (self.template.get("Parameters") or {}).get(value["Ref"])
            if param is not None and "Default" in param:
                return param["Default"]
        if isinstance(value, (dict, list)):
            raise NotLiteral(f"{what} is not known at synth time: {json.dumps(value)[:120]}")
        return value

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in (self.template.get("Resources") or {}).items() if r.get("Type") == type_name}


def _hourly(ctx: Context, key: str, count: float = 1.0) -> float:
    return ctx.price(key) * HOURS_PER_MONTH * count


def _props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties") or {}


def _refers_to(value: Any, logical_id: str) -> bool:
    return f'"{logical_id}"' in json.dumps(value)


def _money(x: float) -> str:
    return f"${x:,.2f}"


# --------------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------------

def nat_gateway(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    return Priced(_hourly(ctx, "ec2.nat_gateway"), "1 NAT gateway, 730 h",
                  [Rate("NAT gateway data processed", ctx.price("ec2.nat_gateway.data"), "GB", "network")])


def eip(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    return Priced(_hourly(ctx, "ec2.public_ipv4"), "1 public IPv4 address, 730 h")


def vpc_endpoint(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    p = _props(r)
    kind = ctx.literal(p.get("VpcEndpointType", "Gateway"), "VpcEndpointType")
    service = p.get("ServiceName")
    service = service if isinstance(service, str) else json.dumps(service)[-40:]
    if kind == "Gateway":
        return Priced(0.0, f"gateway endpoint ({service.rsplit('.', 1)[-1].strip(chr(34) + ']}')}): free")
    if kind != "Interface":
        raise NotLiteral(f"VpcEndpointType {kind} has no price row (interface endpoints only)")
    subnets = p.get("SubnetIds")
    if not isinstance(subnets, list):
        raise NotLiteral("SubnetIds (one endpoint network interface per AZ) is not a list at synth time")
    azs = len(subnets)
    return Priced(_hourly(ctx, "ec2.vpc_endpoint.interface", azs), f"interface endpoint {service} in {azs} AZ(s)",
                  [Rate("interface endpoint data processed", ctx.price("ec2.vpc_endpoint.interface.data"), "GB",
                        "network")])


def ec2_instance(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    itype = ctx.literal(_props(r).get("InstanceType", "m1.small"), "InstanceType")
    return Priced(_hourly(ctx, f"ec2.{itype}"), f"1 x {itype}, 730 h")


# --------------------------------------------------------------------------------------------------
# ingestion and storage
# --------------------------------------------------------------------------------------------------

def transfer_server(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    protocols = _props(r).get("Protocols") or ["SFTP"]  # SFTP when unset (AWS::Transfer::Server Protocols)
    if not isinstance(protocols, list):
        raise NotLiteral(f"Protocols is not known at synth time: {json.dumps(protocols)[:120]}")
    n = len(protocols)
    return Priced(_hourly(ctx, "transfer.endpoint", n),
                  f"{n} protocol endpoint(s) ({', '.join(map(str, protocols))}), 730 h, billed even when stopped",
                  [Rate("Transfer Family upload/download", ctx.price("transfer.data"), "GB", "ingestion")])


def lustre_price(ctx: Context, config: dict[str, Any], what: str) -> tuple[float, str]:
    """Monthly USD and a description of a Lustre file system from its LustreConfiguration-like mapping
    (``DeploymentType``, ``PerUnitStorageThroughput``, ``StorageType``, ``StorageCapacity``...)."""
    dt = ctx.literal(config.get("DeploymentType", "SCRATCH_1"), f"{what}.DeploymentType")
    storage = ctx.literal(config.get("StorageType", "SSD"), f"{what}.StorageType")
    capacity = ctx.literal(config.get("StorageCapacity"), f"{what}.StorageCapacity")
    if not isinstance(capacity, (int, float)):
        raise NotLiteral(f"{what}.StorageCapacity is not set")
    if dt.startswith("SCRATCH"):
        key, tier = f"fsx.lustre.{dt}.SSD", ""
    else:
        throughput = ctx.literal(config.get("PerUnitStorageThroughput"), f"{what}.PerUnitStorageThroughput")
        key, tier = f"fsx.lustre.{dt}.{storage}.{throughput}", f" at {throughput} MB/s/TiB"
    usd = ctx.price(key) * capacity
    return usd, f"Lustre {dt} {storage} {capacity:,} GiB{tier}"


def fsx_file_system(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    p = _props(r)
    fs_type = ctx.literal(p.get("FileSystemType"), "FileSystemType")
    if fs_type != "LUSTRE":
        raise NotLiteral(f"FSx {fs_type} has no pricer yet (Lustre only): price it by hand or add one")
    lc = dict(p.get("LustreConfiguration") or {})
    lc.update({"StorageType": p.get("StorageType", "SSD"), "StorageCapacity": p.get("StorageCapacity")})
    usd, detail = lustre_price(ctx, lc, "LustreConfiguration")
    out = Priced(usd, detail)
    meta = lc.get("MetadataConfiguration") or {}
    if meta.get("Mode") == "USER_PROVISIONED":
        out.unknown = ("metadata IOPS provisioned above the automatic level have no row in the price table "
                       "(the storage is priced)")
    elif meta:
        out.detail += ", metadata IOPS automatic (included)"
    if lc.get("DriveCacheType") == "READ":
        out.unknown = "the HDD read cache (SSD, 20% of capacity) has no row in the price table (the HDD is priced)"
    if (lc.get("AutomaticBackupRetentionDays") or 0) and not str(lc.get("DeploymentType", "")).startswith("SCRATCH"):
        out.per_use.append(Rate("Lustre backup storage", ctx.price("fsx.lustre.backup"), "GB-month", "storage"))
    return out


def log_group(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    gb = _configured_rate(ctx, lid, r, "logs_gb_per_month")
    if not gb:  # idle $0: the per-use rates are shown where the table has them
        return usage_only(ctx, lid, r)
    ingest, storage = ctx.price("logs.ingest"), ctx.price("logs.storage")
    # Stored volume in the steady state: a month's ingestion per month of retention, at most 12 months counted.
    days = _props(r).get("RetentionInDays")
    stored = gb * min((days if isinstance(days, int) else 3653) / 30.4, 12.0)
    return Priced(gb * ingest + stored * storage, f"{gb:g} GB/month ingested (usage file), about {stored:.0f} GB kept",
                  [Rate("log ingestion", ingest, "GB", "logs"), Rate("log storage", storage, "GB-month", "logs")])


def _configured_rate(ctx: Context, lid: str, r: dict[str, Any], name: str) -> float:
    rates = ctx.usage.get(name) or {}
    path = (r.get("Metadata") or {}).get("aws:cdk:path", "")
    for pattern, value in rates.items():
        if fnmatch.fnmatch(f"{ctx.stack}/{lid}", pattern) or (path and fnmatch.fnmatch(path, pattern)):
            return float(value)
    return 0.0


# --------------------------------------------------------------------------------------------------
# serving
# --------------------------------------------------------------------------------------------------

def _endpoint_config(ctx: Context, endpoint: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ref = _props(endpoint).get("EndpointConfigName")
    for lid, cfg in ctx.resources("AWS::SageMaker::EndpointConfig").items():
        if _refers_to(ref, lid):
            return lid, _props(cfg)
    raise NotLiteral(f"EndpointConfigName refers to no endpoint configuration in this stack: {json.dumps(ref)[:100]}")


def _scalable_target(ctx: Context, endpoint_lid: str, variant: str) -> tuple[str, dict[str, Any]] | None:
    for lid, target in ctx.resources("AWS::ApplicationAutoScaling::ScalableTarget").items():
        p = _props(target)
        rid = json.dumps(p.get("ResourceId"))
        if p.get("ScalableDimension") == "sagemaker:variant:DesiredInstanceCount" and \
                f'"{endpoint_lid}"' in rid and f"/variant/{variant}" in rid:
            return lid, p
    return None


def _invocation_target(ctx: Context, target_lid: str) -> float | None:
    for policy in ctx.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values():
        p = _props(policy)
        if not _refers_to(p.get("ScalingTargetId"), target_lid):
            continue
        tt = p.get("TargetTrackingScalingPolicyConfiguration") or {}
        metric = (tt.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
        if metric == "SageMakerVariantInvocationsPerInstance" and isinstance(tt.get("TargetValue"), (int, float)):
            return float(tt["TargetValue"])
    return None


_DAILY_CRON = re.compile(r"cron\((\d{1,2}) (\d{1,2}) \* \* \? \*\)")


def daily_floor(actions: list[dict[str, Any]]) -> float | None:
    """The time-weighted floor of a scalable target whose scheduled actions are daily ``cron(M H * * ? *)``
    changes of MinCapacity (each floor holds until the next action, round the clock), or None when any action is
    something else (a rate, a one-off ``at()``, a weekday schedule, a time zone, no MinCapacity)."""
    points = []
    for action in actions:
        match = _DAILY_CRON.fullmatch(str(action.get("Schedule", "")))
        floor = (action.get("ScalableTargetAction") or {}).get("MinCapacity")
        if match is None or not isinstance(floor, int) or action.get("Timezone") not in (None, "UTC", "Etc/UTC"):
            return None
        points.append((int(match.group(2)) * 60 + int(match.group(1)), floor))
    if not points:
        return None
    points.sort()
    total = 0.0
    for i, (minute, floor) in enumerate(points):
        end = points[(i + 1) % len(points)][0] + (1440 if i + 1 == len(points) else 0)
        total += (end - minute) * floor
    return total / 1440.0


def sagemaker_endpoint(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    _, cfg = _endpoint_config(ctx, r)
    kind = "async" if cfg.get("AsyncInferenceConfig") else "real-time"
    out = Priced()
    parts: list[str] = []
    variants = list(cfg.get("ProductionVariants") or []) + list(cfg.get("ShadowProductionVariants") or [])
    for v in variants:
        name = v.get("VariantName", "?")
        serverless = v.get("ServerlessConfig")
        if serverless:
            pc = serverless.get("ProvisionedConcurrency") or 0
            if pc:
                out.unknown = f"variant {name}: provisioned concurrency ({pc}) has no row in the price table"
            memory = serverless.get("MemorySizeInMB", 1024)
            per_s = ctx.price("sagemaker.serverless.compute") * memory / 1024.0
            out.per_use.append(Rate(f"{name}: serverless compute ({memory} MB)", per_s * 1000, "1k inference-seconds",
                                    "inference"))
            parts.append(f"{name}: serverless, $0 at zero traffic")
            continue
        itype = ctx.literal(v.get("InstanceType"), f"variant {name} InstanceType")
        hourly = ctx.price(f"sagemaker.hosting.{itype}")
        target = _scalable_target(ctx, lid, name)
        count = v.get("InitialInstanceCount", 1)
        floor_note = "initial count (no autoscaling)"
        if target is not None:
            count = ctx.literal(target[1].get("MinCapacity"), f"variant {name} MinCapacity")
            floor_note = "autoscaling floor"
            if target[1].get("ScheduledActions"):
                daily = daily_floor(target[1]["ScheduledActions"])
                if daily is None:
                    floor_note += " (its scheduled actions are not daily floors: MinCapacity counted all day)"
                else:
                    count = daily
                    floor_note = "autoscaling floor averaged over its daily schedule"
            per_minute = _invocation_target(ctx, target[0])
            if per_minute:
                out.per_use.append(Rate(f"{name}: inferences at the scaling target ({per_minute:g}/instance/min on "
                                        f"{itype})", hourly / (per_minute * 60.0) * 1e6, "1M inferences", "inference"))
        out.per_use.append(Rate(f"{name}: {itype} instance above the floor", hourly, "instance-hour", "inference"))
        out.idle_usd += hourly * HOURS_PER_MONTH * float(count)
        parts.append(f"{name}: {float(count):.3g} x {itype} ({kind}, {floor_note})")
    out.detail = "; ".join(parts)
    return out


def sagemaker_cluster(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    out = Priced()
    parts = []
    for group in _props(r).get("InstanceGroups") or []:
        itype = ctx.literal(group.get("InstanceType"), "InstanceGroups.InstanceType")
        count = ctx.literal(group.get("InstanceCount"), "InstanceGroups.InstanceCount")
        parts.append(f"{group.get('InstanceGroupName', '?')}: {count} x {itype}")
        if count and group.get("TrainingPlanArn"):
            # Capacity reserved by a training plan is prepaid with the plan, not billed at on-demand rates.
            raise NotLiteral(f"InstanceGroups.{group.get('InstanceGroupName')} runs on a training plan "
                             f"(prepaid; its price is the plan's, not in the table)")
        if count and any("EbsVolumeConfig" in (c or {}) for c in group.get("InstanceStorageConfigs") or []):
            raise NotLiteral(f"InstanceGroups.{group.get('InstanceGroupName')} has extra EBS volumes per node "
                             f"(SageMaker ML storage, no row in the table)")
        # A group at 0 costs nothing idle: its price is only needed for the per-use rate.
        hourly = ctx.price(f"sagemaker.hyperpod.{itype}") if count else \
            ctx.optional_price(f"sagemaker.hyperpod.{itype}")
        if hourly is None:
            parts[-1] += f" (no per-use price: add sagemaker.hyperpod.{itype} for {ctx.region})"
            continue
        out.idle_usd += hourly * HOURS_PER_MONTH * count
        out.per_use.append(Rate(f"HyperPod {itype} node (above the group's count)", hourly, "node-hour", "training"))
    out.detail = "HyperPod, every instance of every group runs: " + "; ".join(parts)
    return out


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------

#: ParallelCluster's head node root volume when the configuration sets no size (the AMI's, 40 GiB on the
#: official AMIs): https://docs.aws.amazon.com/parallelcluster/latest/ug/HeadNode-v3.html#yaml-HeadNode-LocalStorage
PCLUSTER_DEFAULT_ROOT_GIB = 40


def pcluster_cluster(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    conf = _props(r).get("ClusterConfiguration") or {}
    if isinstance(conf, str):
        raise NotLiteral("ClusterConfiguration is a string (YAML): pass it as an object to be priced")
    head = conf.get("HeadNode") or {}
    htype = ctx.literal(head.get("InstanceType"), "HeadNode.InstanceType")
    root = ((head.get("LocalStorage") or {}).get("RootVolume") or {}).get("Size") or PCLUSTER_DEFAULT_ROOT_GIB
    out = Priced(_hourly(ctx, f"ec2.{htype}") + root * ctx.price("ebs.gp3"))
    parts = [f"head node {htype} + {root} GiB gp3"]
    for queue in (conf.get("Scheduling") or {}).get("SlurmQueues") or []:
        spot = queue.get("CapacityType") == "SPOT"
        for cr in queue.get("ComputeResources") or []:
            itype = ctx.literal(cr.get("InstanceType"), f"{queue.get('Name')}.InstanceType")
            hourly = ctx.price(f"ec2.{itype}")
            min_count = cr.get("MinCount", 0) or 0
            out.idle_usd += hourly * HOURS_PER_MONTH * min_count
            if min_count:
                parts.append(f"{min_count} x {itype} always on ({queue.get('Name')})")
            out.per_use.append(Rate(f"Slurm {queue.get('Name')}/{cr.get('Name')} node {itype}"
                                    f"{' (spot: on-demand price shown, spot is lower)' if spot else ''}",
                                    hourly, "node-hour", "training"))
    dashboards = ((conf.get("Monitoring") or {}).get("Dashboards") or {}).get("CloudWatch") or {}
    if dashboards.get("Enabled", True):
        out.idle_usd += ctx.price("cloudwatch.dashboard")
        parts.append("ParallelCluster's CloudWatch dashboard")
    for storage in conf.get("SharedStorage") or []:
        if storage.get("StorageType") == "FsxLustre" and not (storage.get("FsxLustreSettings") or {}).get("FileSystemId"):
            usd, detail = lustre_price(ctx, storage.get("FsxLustreSettings") or {}, "FsxLustreSettings")
            out.idle_usd += usd
            parts.append(f"managed {detail}")
        elif storage.get("StorageType") == "Ebs" and not (storage.get("EbsSettings") or {}).get("VolumeId"):
            size = (storage.get("EbsSettings") or {}).get("Size", 35)
            out.idle_usd += size * ctx.price("ebs.gp3")
            parts.append(f"managed EBS {size} GiB")
    out.detail = "; ".join(parts) + "; compute nodes scale from MinCount"
    return out


def batch_compute_environment(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    from mlinfra.domain import instances

    cr = _props(r).get("ComputeResources") or {}
    kind = cr.get("Type", "EC2")
    if kind.startswith("FARGATE"):
        return Priced(0.0, f"{kind}: per task vCPU/GB-hour, nothing while idle")
    types = [t for t in cr.get("InstanceTypes") or [] if isinstance(t, str)]
    out = Priced(0.0, f"{kind}, {cr.get('MinvCpus', 0)} to {cr.get('MaxvCpus')} vCPUs")
    for itype in types:
        hourly = ctx.optional_price(f"ec2.{itype}")
        if hourly is None:
            out.detail += f"; no per-use price for {itype} in {ctx.region}"
        else:
            out.per_use.append(Rate(f"Batch node {itype}{' (spot: on-demand price shown)' if kind == 'SPOT' else ''}",
                                    hourly, "node-hour", "training"))
    minv = ctx.literal(cr.get("MinvCpus", 0), "MinvCpus")
    if minv:
        if not types:
            raise NotLiteral("MinvCpus > 0 with no instance type to price")
        itype = types[0]
        try:
            vcpus = instances.get(itype).vcpu
        except Exception:  # noqa: BLE001 - any lookup failure makes the resource unknown, with the reason
            raise NotLiteral(f"vCPUs of {itype} are not in mlinfra/data/accelerator-instances.csv") from None
        nodes = math.ceil(minv / vcpus)
        out.idle_usd = _hourly(ctx, f"ec2.{itype}", nodes)
        out.detail += f"; MinvCpus keeps {nodes} x {itype} running"
    return out


# --------------------------------------------------------------------------------------------------
# security, monitoring, delivery
# --------------------------------------------------------------------------------------------------

def kms_key(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    rotation = bool(_props(r).get("EnableKeyRotation"))
    return Priced(ctx.price("kms.key"), "1 customer managed key" + (
        "; rotation on: +$1/month after each of the first two rotations" if rotation else ""),
        [Rate("KMS requests", ctx.price("kms.requests"), "10k requests", "other")])


def alarm(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    p = _props(r)
    metrics = p.get("Metrics")
    if p.get("ThresholdMetricId"):
        count, what = 3, "anomaly detection (3 metrics)"
    elif isinstance(metrics, list):
        count = sum(1 for m in metrics if isinstance(m, dict) and "MetricStat" in m) or 1
        what = f"metric math over {count} metric(s)"
    else:
        count, what = 1, "1 metric"
    period = p.get("Period", 60)
    if isinstance(metrics, list):
        periods = [m.get("MetricStat", {}).get("Period", 60) for m in metrics if isinstance(m, dict)]
        period = min([x for x in periods if isinstance(x, int)] or [60])
    key = "cloudwatch.alarm.high_resolution" if isinstance(period, int) and period < 60 else "cloudwatch.alarm.standard"
    return Priced(ctx.price(key) * count, what)


def composite_alarm(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    return Priced(ctx.price("cloudwatch.alarm.composite"), "1 composite alarm")


def dashboard(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    return Priced(ctx.price("cloudwatch.dashboard"), "1 dashboard")


def secret(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    replicas = len(_props(r).get("ReplicaRegions") or [])
    return Priced(ctx.price("secretsmanager.secret") * (1 + replicas), f"1 secret + {replicas} replica(s)")


def dynamodb_table(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    p = _props(r)
    if p.get("BillingMode", "PROVISIONED") == "PAY_PER_REQUEST":
        return Priced(0.0, "on-demand: per request",
                      [Rate("DynamoDB writes", ctx.price("dynamodb.on_demand.write"), "1M writes", "other")])
    throughputs = [p.get("ProvisionedThroughput") or {}]
    throughputs += [g.get("ProvisionedThroughput") or {} for g in p.get("GlobalSecondaryIndexes") or []]
    rcu = sum(ctx.literal(t.get("ReadCapacityUnits", 0), "ReadCapacityUnits") for t in throughputs)
    wcu = sum(ctx.literal(t.get("WriteCapacityUnits", 0), "WriteCapacityUnits") for t in throughputs)
    usd = _hourly(ctx, "dynamodb.provisioned.rcu", rcu) + _hourly(ctx, "dynamodb.provisioned.wcu", wcu)
    return Priced(usd, f"provisioned {rcu} RCU, {wcu} WCU")


def codepipeline(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    if _props(r).get("PipelineType", "V1") == "V2":
        return Priced(0.0, "V2: per action-minute",
                      [Rate("pipeline action execution", ctx.price("codepipeline.v2"), "action-minute", "delivery")])
    return Priced(ctx.price("codepipeline.v1"), "V1: per active pipeline")


def nested_stack(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    url = json.dumps(_props(r).get("TemplateURL"))
    asset = (r.get("Metadata") or {}).get("aws:asset:path")
    if asset and ctx.directory is not None and (ctx.directory / asset).is_file() and ctx.price_nested is not None:
        template = json.loads((ctx.directory / asset).read_text())
        items = ctx.price_nested(template, stack=f"{ctx.stack}/{lid}", region=ctx.region, prices=ctx.prices,
                               directory=ctx.directory, usage=ctx.usage)
        unknown = [i for i in items if i.unknown]
        out = Priced(sum(i.idle_usd for i in items), f"nested stack: {len(items)} resource(s)")
        out.per_use = [rate for i in items for rate in i.per_use]
        if unknown:
            out.unknown = "; ".join(f"{i.logical_id} ({i.type}): {i.unknown}" for i in unknown)
        return out
    if "aws-parallelcluster" in url and "custom_resource" in url:
        return Priced(0.0, "AWS ParallelCluster's provider stack (Lambda functions and IAM roles): no idle charge")
    raise NotLiteral("a nested stack whose template is not in the assembly: price its template separately")


def usage_only(ctx: Context, lid: str, r: dict[str, Any]) -> Priced:
    rates = []
    for key, what, unit, category in USAGE_RATES.get(r["Type"], ()):
        usd = ctx.optional_price(key)
        if usd is not None:
            rates.append(Rate(what, usd, unit, category))
    if r["Type"] == "AWS::StepFunctions::StateMachine":
        rates += _training_job_rates(ctx, r)
    return Priced(0.0, "per use only", rates)


_TRAINING_TYPE = re.compile(r'"ResourceConfig"\s*:\s*\{\s*"InstanceType"\s*:\s*"(ml\.[a-z0-9-]+\.[a-z0-9]+)"')


def _training_job_rates(ctx: Context, r: dict[str, Any]) -> list[Rate]:
    """Per instance-hour rates of the SageMaker training jobs a state machine starts (CreateTrainingJob requests
    in its definition; a training job has no CloudFormation resource of its own)."""
    definition = _props(r).get("DefinitionString")
    text = definition if isinstance(definition, str) else "".join(
        part for part in json.loads(json.dumps(definition)).get("Fn::Join", ["", []])[1] if isinstance(part, str)) \
        if isinstance(definition, dict) else ""
    rates = []
    for itype in dict.fromkeys(_TRAINING_TYPE.findall(text)):
        usd = ctx.optional_price(f"sagemaker.training.{itype}")
        if usd is not None:
            rates.append(Rate(f"SageMaker training job on {itype} (on-demand; managed spot is lower)", usd,
                              "instance-hour", "training"))
    return rates


#: Per-use rates shown for usage-only types: (price key, what, unit, category).
USAGE_RATES: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "AWS::S3::Bucket": (("s3.standard", "S3 Standard storage", "GB-month", "storage"),),
    "AWS::Lambda::Function": (("lambda.requests", "Lambda requests", "1M requests", "other"),),
    "AWS::StepFunctions::StateMachine": (("stepfunctions.standard", "state transitions", "1k transitions", "other"),),
    "AWS::SQS::Queue": (("sqs.requests", "SQS requests", "1M requests", "other"),),
    "AWS::SNS::Topic": (("sns.requests", "SNS publishes", "1M requests", "other"),),
    "AWS::KinesisFirehose::DeliveryStream": (("firehose.ingest", "Firehose ingestion", "GB", "ingestion"),),
    "AWS::DataSync::Task": (("datasync.data", "DataSync copy", "GB", "ingestion"),),
    "AWS::CodeBuild::Project": (("codebuild.general1.small", "CodeBuild small build", "minute", "delivery"),),
    "AWS::Events::Rule": (),
    "AWS::EC2::FlowLog": (("logs.ingest", "flow log records to CloudWatch Logs", "GB", "logs"),),
    "AWS::Logs::LogGroup": (("logs.ingest", "log ingestion", "GB", "logs"),
                            ("logs.storage", "log storage", "GB-month", "logs")),
}

Pricer = Callable[[Context, str, dict[str, Any]], Priced]

PRICERS: dict[str, Pricer] = {
    "AWS::EC2::NatGateway": nat_gateway,
    "AWS::EC2::EIP": eip,
    "AWS::EC2::VPCEndpoint": vpc_endpoint,
    "AWS::EC2::Instance": ec2_instance,
    "AWS::Transfer::Server": transfer_server,
    "AWS::FSx::FileSystem": fsx_file_system,
    "AWS::SageMaker::Endpoint": sagemaker_endpoint,
    "AWS::SageMaker::Cluster": sagemaker_cluster,
    "Custom::PclusterCluster": pcluster_cluster,
    "AWS::Batch::ComputeEnvironment": batch_compute_environment,
    "AWS::KMS::Key": kms_key,
    "AWS::CloudWatch::Alarm": alarm,
    "AWS::CloudWatch::CompositeAlarm": composite_alarm,
    "AWS::CloudWatch::Dashboard": dashboard,
    "AWS::SecretsManager::Secret": secret,
    "AWS::DynamoDB::Table": dynamodb_table,
    "AWS::CodePipeline::Pipeline": codepipeline,
    "AWS::CloudFormation::Stack": nested_stack,
    "AWS::Logs::LogGroup": log_group,
}
