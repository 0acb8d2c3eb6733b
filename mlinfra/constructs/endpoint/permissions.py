"""The execution role's permissions and the invoke grant."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from mlinfra.constructs.common import acknowledge, is_token
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.constructs.endpoint.props import _ECR_IMAGE_RE


class _InvokeMixin:
    """The invoke grant, shared by a built endpoint and an imported one."""

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """``sagemaker:InvokeEndpoint`` (and the async/streaming variants) on this endpoint only."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointAsync", "sagemaker:InvokeEndpointWithResponseStream"],
            resource_arns=[self.endpoint_arn],
        )


class _PermissionsMixin(_InvokeMixin):
    """The execution role's permissions and the invoke grant."""

    # ---- IAM ---------------------------------------------------------------------------------------------

    def _grant_runtime(self, role: iam.IRole) -> None:
        stack = cdk.Stack.of(self)
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="EndpointLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[stack.format_arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/Endpoints/*",
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)],
        ))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="EndpointMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker"]}},
        ))
        self.encryption_key.grant_encrypt_decrypt(role)

    def _grant_vpc(self, role: iam.IRole) -> None:
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ModelVpcInterfaces",
            actions=["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                     "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
                     "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"],
            resources=["*"],
        ))
        for rule in ("checkov::CKV_AWS_109", "checkov::CKV_AWS_111"):
            acknowledge(role, rule, "SageMaker's documented VPC permissions for a model in a VPC: the ENI actions "
                        "take no resource scoping at creation (SageMaker developer guide, give SageMaker access to "
                        "resources in your VPC)")

    def _grant_image_pull(self, image_uri: str | None) -> None:
        stack = cdk.Stack.of(self)
        if not getattr(self, "_ecr_auth", False):
            self.role.add_to_principal_policy(iam.PolicyStatement(
                sid="EcrAuth", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
            self._ecr_auth = True
        m = _ECR_IMAGE_RE.fullmatch(image_uri) if image_uri and not is_token(image_uri) else None
        if m:
            account, region, repo = m.groups()
            arn = f"arn:{stack.partition}:ecr:{region}:{account}:repository/{repo}"
        else:  # a model package's image, or a token: repositories of this account
            arn = stack.format_arn(service="ecr", resource="repository", resource_name="*")
        self.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[arn],
        ))

    def _objects(self, bucket: s3.IBucket, pattern: str) -> str:
        """``pattern`` (an object key pattern of ``bucket`` granted to the role), remembered as an expected
        wildcard of the role's policy."""
        self._object_arns.append(bucket.arn_for_objects(pattern))
        return pattern

    def _acknowledge(self) -> None:
        if not self._own_role:
            return
        acknowledge_wildcards(
            self.role,
            "grant_* defaults on the named buckets/keys (s3:GetObject*, s3:List*, s3:Abort*, kms:ReEncrypt*, "
            "kms:GenerateDataKey*) - scoped to the model, capture and async prefixes and the named keys only",
            actions=(*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS))
        acknowledge_wildcards(
            self.role,
            "SageMaker model role: ecr:GetAuthorizationToken, cloudwatch:PutMetricData (namespace-conditioned) "
            "and VPC ENI management take no resource; logs are limited to /aws/sagemaker/Endpoints/*; S3 "
            "access is limited to the model artifacts, data-capture and async-inference prefixes",
            resources=("*", ending(":log-group:/aws/sagemaker/Endpoints/*"), ending(":repository/*"),
                       *self._object_arns))

