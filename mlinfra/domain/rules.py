"""The service-rules table: every AWS rule an mlinfra construct relies on, as data with its source.

A rule here is something the service itself enforces or does (an API that refuses a combination, a validator that
rejects a configuration, a behaviour a design depends on), found in AWS documentation or in a validator AWS
publishes. Each row names the code that enforces it (``enforced_by``, a dotted path that must import) so a test can
check that every rule has a guard, and every guard raises a message that cites the rule id.

Add rows in the section of the service (one section per service keeps parallel changes apart). Keep ``id`` stable:
messages and tests cite it.
"""

from __future__ import annotations

import dataclasses

__all__ = ["ServiceRule", "RULES", "rule", "cite"]


@dataclasses.dataclass(frozen=True)
class ServiceRule:
    #: Stable id, ``<service>.<short-name>``, cited in error messages.
    id: str
    #: The rule in one sentence, as the service states it.
    rule: str
    #: Where AWS says so: a documentation URL (and section) or the validator's name.
    source: str
    #: Dotted path of the function or class that enforces the rule in mlinfra (must import).
    enforced_by: str

    @property
    def service(self) -> str:
        return self.id.split(".", 1)[0]


# --- SageMaker (training, processing, transform, hosting) ------------------------------------------------------
_SAGEMAKER: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="sagemaker.no-volume-kms-with-instance-storage",
        rule="KmsKeyId (endpoint config) / VolumeKmsKeyId (jobs) must not be set for instance types with local NVMe "
        "instance storage; those volumes are encrypted by the instance's hardware module.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariant.html and "
        "API_ResourceConfig.html (VolumeKmsKeyId)",
        enforced_by="mlinfra.domain.hosting_instances.family_of",
    ),
)


# --- Step Functions ------------------------------------------------------------------------------------------------
_STEPFUNCTIONS: tuple[ServiceRule, ...] = ()


# --- AWS Batch -----------------------------------------------------------------------------------------------------
_BATCH: tuple[ServiceRule, ...] = ()


# --- AWS ParallelCluster -------------------------------------------------------------------------------------------
_PARALLELCLUSTER: tuple[ServiceRule, ...] = ()


# --- FSx for Lustre ------------------------------------------------------------------------------------------------
_FSX: tuple[ServiceRule, ...] = ()


# --- EC2 (instances, EFA, placement, IMDS) -------------------------------------------------------------------------
_EC2: tuple[ServiceRule, ...] = ()


# --- IAM, KMS, SQS, SNS, Service Catalog (isolation and confused deputy) -------------------------------------------
_IAM: tuple[ServiceRule, ...] = ()


# --- SageMaker HyperPod --------------------------------------------------------------------------------------------
_HYPERPOD: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="hyperpod.names",
        rule="Cluster, instance-group and partition names are 1-63 characters matching [a-zA-Z0-9](-*[a-zA-Z0-9])*.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateCluster.html (ClusterName, "
        "ClusterInstanceGroupSpecification.InstanceGroupName)",
        enforced_by="mlinfra.domain.hyperpod.name_errors",
    ),
    ServiceRule(
        id="hyperpod.instance-type-offered",
        rule="An instance group's InstanceType must be one HyperPod offers (the ClusterInstanceType enum).",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterInstanceGroupSpecification.html "
        "(InstanceType valid values; botocore sagemaker model ClusterInstanceType)",
        enforced_by="mlinfra.domain.hyperpod.instance_type_errors",
    ),
    ServiceRule(
        id="hyperpod.instance-count",
        rule="InstanceCount is 0 to 6758 per instance group; at most 100 instance groups per cluster.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterInstanceGroupSpecification.html",
        enforced_by="mlinfra.domain.hyperpod.instance_count_errors",
    ),
    ServiceRule(
        id="hyperpod.lifecycle-source-s3-prefix",
        rule="Lifecycle scripts' SourceS3Uri must start with s3://sagemaker- (what the managed cluster instance "
        "policy reads) unless the execution role has an explicit s3:ListBucket/s3:GetObject policy on the bucket.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterLifeCycleConfig.html",
        enforced_by="mlinfra.domain.hyperpod.lifecycle_uri_errors",
    ),
    ServiceRule(
        id="hyperpod.deep-health-checks",
        rule="On-start deep health checks (InstanceStress, InstanceConnectivity) run on accelerated (GPU, Trainium) "
        "instance groups and need the current HyperPod AMI.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-hyperpod-eks-resiliency-deep-health-checks.html "
        "and FACTS.md (SageMaker HyperPod)",
        enforced_by="mlinfra.domain.hyperpod.deep_health_check_errors",
    ),
    ServiceRule(
        id="hyperpod.slurm-topology",
        rule="Managed Slurm: one Controller group, at most one Login group, Compute groups each in one partition "
        "(ClusterSlurmConfig.PartitionNames holds at most one name); more than one controller node (multi-head) "
        "needs an external Slurm accounting database (Orchestrator.Slurm.AccountingDatabase).",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterSlurmConfig.html and "
        "https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-hyperpod-multihead.html",
        enforced_by="mlinfra.domain.hyperpod.slurm_topology_errors",
    ),
)


# --- S3, DynamoDB, EventBridge, Transfer Family, DataSync (ingestion) ----------------------------------------------
_INGESTION: tuple[ServiceRule, ...] = ()


# --- Drift monitoring (issue 15): SageMaker Processing, CloudWatch, EventBridge, Scheduler ------------------------
_MONITORING: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="sagemaker.processing-max-runtime",
        rule="A processing job's StoppingCondition.MaxRuntimeInSeconds is between 1 and 777600 (9 days).",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingStoppingCondition.html",
        enforced_by="mlinfra.constructs.drift_monitor.validate_max_runtime",
    ),
    ServiceRule(
        id="sagemaker.list-processing-jobs-resource",
        rule="sagemaker:ListProcessingJobs supports no resource-level permissions: a policy allowing it must name "
        "Resource '*' (an ARN never matches, the call is denied).",
        source="https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html",
        enforced_by="mlinfra.constructs.drift_monitor.DriftMonitor",
    ),
    ServiceRule(
        id="cloudwatch.put-metric-data-limits",
        rule="One PutMetricData request carries at most 1000 metrics, up to 30 dimensions each, and no NaN or "
        "infinite values.",
        source="https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html",
        enforced_by="mlinfra.domain.drift.job.put_metrics",
    ),
)


# --- Billing (what `mlinfra cost` relies on; mlinfra.domain.cost.pricers) ------------------------------------------
_COST: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="cost.transfer-server-billed-until-deleted",
        rule="A Transfer Family server is billed per enabled protocol per hour from creation until deletion, "
        "also while it is stopped.",
        source="https://aws.amazon.com/aws-transfer-family/pricing/",
        enforced_by="mlinfra.domain.cost.pricers.transfer_server",
    ),
    ServiceRule(
        id="cost.interface-endpoint-per-az-hour",
        rule="An interface VPC endpoint is billed per hour in each Availability Zone it is provisioned in, "
        "whatever its traffic; gateway endpoints (S3, DynamoDB) have no charge.",
        source="https://aws.amazon.com/privatelink/pricing/",
        enforced_by="mlinfra.domain.cost.pricers.vpc_endpoint",
    ),
    ServiceRule(
        id="cost.public-ipv4-hourly",
        rule="Every public IPv4 address (a NAT gateway's Elastic IP included) is billed per hour, attached or not.",
        source="https://aws.amazon.com/vpc/pricing/ (Public IPv4 Address)",
        enforced_by="mlinfra.domain.cost.pricers.eip",
    ),
    ServiceRule(
        id="cost.endpoint-instances-at-the-floor",
        rule="An instance-backed SageMaker endpoint bills every running instance-hour; an asynchronous endpoint "
        "can scale to zero instances (MinCapacity 0), a real-time instance variant keeps at least one.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html",
        enforced_by="mlinfra.domain.cost.pricers.sagemaker_endpoint",
    ),
)


def _index(*sections: tuple[ServiceRule, ...]) -> dict[str, ServiceRule]:
    table: dict[str, ServiceRule] = {}
    for section in sections:
        for r in section:
            if r.id in table:
                raise ValueError(f"service rule id {r.id!r} is defined twice")
            table[r.id] = r
    return table


#: Every rule, by id.
RULES: dict[str, ServiceRule] = _index(
    _SAGEMAKER, _STEPFUNCTIONS, _BATCH, _PARALLELCLUSTER, _FSX, _EC2, _IAM, _HYPERPOD, _INGESTION, _COST,
    _MONITORING,
)


def rule(rule_id: str) -> ServiceRule:
    """The rule with this id; a KeyError naming the known ids otherwise."""
    try:
        return RULES[rule_id]
    except KeyError:
        raise KeyError(f"unknown service rule {rule_id!r}; known: {sorted(RULES)}") from None


def cite(rule_id: str) -> str:
    """The suffix every violation message carries: ``(AWS rule <id>: <source>)``."""
    r = rule(rule_id)
    return f"(AWS rule {r.id}: {r.source})"
