"""ParallelClusterProvider: AWS ParallelCluster's custom-resource provider as a nested stack (its ServiceToken
feeds :class:`~mlinfra.constructs.training_cluster.SlurmTrainingCluster`)."""

from __future__ import annotations

from typing import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from mlinfra.domain.parallelcluster import DEFAULT_PCLUSTER_VERSION, PCLUSTER_MIN_MINOR, is_pcluster_release

__all__ = ["ParallelClusterProvider", "PCLUSTER_PROVIDER_TEMPLATE", "validate_pcluster_version"]

#: AWS-hosted ParallelCluster custom-resource provider template ("Provider stack hosted by AWS ParallelCluster").
PCLUSTER_PROVIDER_TEMPLATE = (
    "https://${AWS::Region}-aws-parallelcluster.s3.${AWS::Region}.${AWS::URLSuffix}"
    "/parallelcluster/${Version}/templates/custom_resource/cluster.yaml"
)


def validate_pcluster_version(version: str, prop: str = "version") -> str:
    if not is_pcluster_release(version):
        raise ValueError(f"{prop} must be a ParallelCluster release 3.{PCLUSTER_MIN_MINOR}.0 or later (the CloudFormation "
                         f"custom resource's first), such as {DEFAULT_PCLUSTER_VERSION}, got: {version!r}")
    return version


class ParallelClusterProvider(Construct):
    """AWS ParallelCluster's custom-resource provider, deployed as a nested stack from the template AWS hosts
    per region and release; ``service_token`` feeds ``SlurmTrainingCluster(service_token=...)``.

    :param version: ParallelCluster release (3.6.0 or later). :default: 3.16.1
    :param additional_iam_policies: managed policy ARNs added to the provider's Lambda role (for example to let
        it attach policies to the head node). :default: none
    :param custom_lambda_role: a role replacing the provider's default Lambda role; it must be allowed to
        create the cluster's stack and roles and to attach the cluster's policies (``iam:AttachRolePolicy`` on
        the policies under ``/parallelcluster/``, see docs/training.md). :default: None
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        version: str = DEFAULT_PCLUSTER_VERSION,
        additional_iam_policies: Sequence[str] = (),
        custom_lambda_role: iam.IRole | None = None,
    ) -> None:
        super().__init__(scope, id)
        validate_pcluster_version(version)
        if custom_lambda_role is not None and additional_iam_policies:
            raise ValueError("additional_iam_policies apply to the provider's default role only; pass either them or "
                             "custom_lambda_role, got both")
        parameters = {}
        if custom_lambda_role is not None:
            parameters["CustomLambdaRole"] = custom_lambda_role.role_arn
        if additional_iam_policies:
            parameters["AdditionalIamPolicies"] = ",".join(additional_iam_policies)
        self.version = version
        self.stack = cdk.CfnStack(
            self, "Stack",
            template_url=cdk.Fn.sub(PCLUSTER_PROVIDER_TEMPLATE, {"Version": version}),
            parameters=parameters or None,
        )
        self.service_token = self.stack.get_att("Outputs.ServiceToken").to_string()
