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
        enforced_by="mlinfra.domain.hosting_instances.accepts_volume_kms_key",
    ),
    ServiceRule(
        id="sagemaker.inference-image-serves",
        rule="A hosted model's image must implement the serving contract (GET /ping, POST /invocations on 8080); "
        "training images (the *-training Deep Learning Containers) do not.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html",
        enforced_by="mlinfra.constructs.retrain_pipeline._validate_inference_image",
    ),
    ServiceRule(
        id="sagemaker.model-role-reads-artifact-and-image",
        rule="The model's execution role downloads ModelDataUrl (kms:Decrypt on the artifact's key) and pulls the "
        "image (ECR pull actions and ecr:GetAuthorizationToken).",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html (CreateModel API: execution role permissions)",
        enforced_by="mlinfra.constructs.retrain_pipeline.RetrainPipeline._grant_model_role",
    ),
    ServiceRule(
        id="sagemaker.endpoint-stack-update-guarded",
        rule="AWS::SageMaker::Endpoint applies DeploymentConfig (blue/green, auto-rollback) to stack updates and keeps "
        "the current instance count and weights with RetainAllVariantProperties; without them an update is "
        "all at once and resets capacity to InitialInstanceCount.",
        source="https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sagemaker-endpoint.html",
        enforced_by="mlinfra.constructs.endpoint.rollout._RolloutMixin._guard_stack_updates",
    ),
    ServiceRule(
        id="sagemaker.update-endpoint-in-service",
        rule="UpdateEndpoint is refused while the endpoint is Creating, Updating, SystemUpdating or RollingBack; a "
        "missing endpoint is reported as a ValidationException 'Could not find endpoint'.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html",
        enforced_by="mlinfra.retrain_definition.build_definition",
    ),
    ServiceRule(
        id="sagemaker.auto-rollback-describe-alarms",
        rule="An UpdateEndpoint with AutoRollbackConfiguration needs cloudwatch:DescribeAlarms on the alarms.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html",
        enforced_by="mlinfra.constructs.retrain_pipeline.RetrainPipeline._grant_state_machine",
    ),
)


# --- Step Functions ------------------------------------------------------------------------------------------------
_STEPFUNCTIONS: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="stepfunctions.history-event-limit",
        rule="A Standard execution stops at 25,000 history events; that end runs no Catch. A Task with a "
        "Choice/Wait poll loop costs about 13 events per iteration.",
        source="https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html (execution history)",
        enforced_by="mlinfra.retrain_definition.worst_case_history_events",
    ),
    ServiceRule(
        id="stepfunctions.sagemaker-sync-iam",
        rule="The optimized sagemaker:create*Job.sync integrations need events:PutTargets, PutRule and DescribeRule "
        "on rule/StepFunctionsGetEventsForSageMaker*JobsRule and the matching sagemaker:Stop*Job.",
        source="https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html",
        enforced_by="mlinfra.constructs.retrain_pipeline.RetrainPipeline._grant_state_machine",
    ),
)


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
    _SAGEMAKER, _STEPFUNCTIONS, _BATCH, _PARALLELCLUSTER, _FSX, _EC2, _IAM, _HYPERPOD, _INGESTION
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
