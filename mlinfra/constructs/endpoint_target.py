"""The contract between the serving and the retrain-pipeline capabilities.

An :class:`EndpointTarget` is what a pipeline needs to roll a newly approved model out to an existing
SageMaker endpoint: which endpoint and variant, how to size the new production variant, which role the new
model runs as, and the blue/green deployment configuration (with auto-rollback alarms) to pass to
``UpdateEndpoint``. The endpoint construct produces one (``Endpoint.deploy_target``); the pipeline consumes it.
Neither imports the other.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms


@dataclasses.dataclass(frozen=True)
class EndpointTarget:
    """Where and how a retrain pipeline deploys a model.

    :param endpoint_name: the endpoint's name (a token is fine).
    :param endpoint_arn: the endpoint's ARN, for least-privilege IAM.
    :param variant_name: the production variant the new model replaces.
    :param instance_type: ``ml.*`` instance type of the new variant.
    :param initial_instance_count: instances of the new variant.
    :param model_execution_role: the role the new model runs as (the pipeline may pass exactly this role).
    :param deployment_config: the ``DeploymentConfig`` of ``UpdateEndpoint`` (``BlueGreenUpdatePolicy`` with
        canary/linear traffic routing and ``AutoRollbackConfiguration`` alarms), in the API's PascalCase shape.
        :default: None (all-at-once update)
    :param kms_key: key of the endpoint's storage volume. :default: None
    :param vpc_config: ``VpcConfig`` of the model (``SecurityGroupIds``, ``Subnets``). :default: None
    :param enable_network_isolation: run the model with network isolation. :default: True
    :param model_parameters: names of the SSM parameters (image, artifact URI) of the endpoint's
        :class:`~mlinfra.constructs.endpoint.ownership.ModelPointer`, which the pipeline writes after a rollout so
        the next ``cdk deploy`` keeps the rolled-out model. :default: () (the pipeline records nothing)
    :param model_parameter_arns: their ARNs (for least-privilege ``ssm:PutParameter``). :default: ()
    :param rollback_alarm_arns: ARNs of the alarms ``deployment_config`` rolls back on (the caller of
        ``UpdateEndpoint`` needs ``cloudwatch:DescribeAlarms`` on them). :default: ()
    :param deployment_timeout_seconds: the guardrails' maximum execution time; the pipeline's endpoint wait is
        derived from it. :default: None
    """

    endpoint_name: str
    endpoint_arn: str
    variant_name: str
    instance_type: str
    initial_instance_count: int
    model_execution_role: iam.IRole
    deployment_config: Mapping[str, Any] | None = None
    kms_key: kms.IKey | None = None
    vpc_config: Mapping[str, Any] | None = None
    enable_network_isolation: bool = True
    model_parameters: tuple[str, ...] = ()
    model_parameter_arns: tuple[str, ...] = ()
    rollback_alarm_arns: tuple[str, ...] = ()
    deployment_timeout_seconds: int | None = None

    def __post_init__(self) -> None:
        if not str(self.instance_type).startswith("ml."):
            raise ValueError(f"instance_type must be a SageMaker type starting with 'ml.', got: {self.instance_type!r}")
        if self.initial_instance_count < 1:
            raise ValueError(f"initial_instance_count must be >= 1, got: {self.initial_instance_count}")
