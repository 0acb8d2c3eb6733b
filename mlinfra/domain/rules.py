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
_HYPERPOD: tuple[ServiceRule, ...] = ()


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
    _SAGEMAKER, _STEPFUNCTIONS, _BATCH, _PARALLELCLUSTER, _FSX, _EC2, _IAM, _HYPERPOD, _INGESTION,
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
