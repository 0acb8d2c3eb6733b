"""The platform network's rules (no ``aws_cdk`` import): VPC CIDR, interface endpoints, log retention.

The :class:`~mlinfra.constructs.network.Network` construct and the configuration's ``network`` section both
validate with these, so a value the configuration accepts is one the construct accepts.
"""

from __future__ import annotations

import ipaddress

__all__ = [
    "INTERFACE_ENDPOINT_NAMES",
    "DEFAULT_INTERFACE_ENDPOINTS",
    "LOG_RETENTION_DAYS",
    "VPC_PREFIX_LENGTHS",
    "cidr_error",
]

#: Interface endpoint names accepted by the Network construct (attributes of
#: ``aws_ec2.InterfaceVpcEndpointAwsService``; a test checks each exists there).
INTERFACE_ENDPOINT_NAMES: tuple[str, ...] = (
    "SAGEMAKER_API", "SAGEMAKER_RUNTIME", "SAGEMAKER_NOTEBOOK", "STS", "ECR", "ECR_DOCKER", "CLOUDWATCH_LOGS",
    "CLOUDWATCH_MONITORING", "SSM", "SSM_MESSAGES", "EC2_MESSAGES", "KMS", "STEP_FUNCTIONS", "EVENTBRIDGE",
    "SECRETS_MANAGER", "BATCH", "FSX", "DATASYNC", "TRANSFER", "GLUE", "SNS", "SQS", "LAMBDA",
)

#: The interface endpoints a created network gets unless told otherwise.
DEFAULT_INTERFACE_ENDPOINTS: tuple[str, ...] = (
    "SAGEMAKER_API", "SAGEMAKER_RUNTIME", "STS", "ECR", "ECR_DOCKER", "CLOUDWATCH_LOGS",
)

#: Values CloudWatch Logs accepts for a log group's retention in days (PutRetentionPolicy ``retentionInDays``).
#: Source: https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)

#: Prefix lengths of a VPC CIDR the Network construct lays out (AWS allows /16 to /28; the layout needs
#: room for private subnets of 1/16 and public of 1/256 of the block).
VPC_PREFIX_LENGTHS = range(16, 21)


def cidr_error(cidr: object, prop: str = "cidr") -> str | None:
    """Why ``cidr`` cannot be the VPC's IPv4 block, or None. Host bits set is named with the aligned block."""
    if not isinstance(cidr, str):
        return f"{prop}: must be an IPv4 CIDR such as 10.0.0.0/16, got: {cidr!r}"
    try:
        net = ipaddress.IPv4Network(cidr)
    except ValueError:
        try:
            aligned = ipaddress.IPv4Network(cidr, strict=False)
        except ValueError:
            return f"{prop}: must be an IPv4 CIDR such as 10.0.0.0/16, got: {cidr!r}"
        return f"{prop}: has host bits set (the block starts at its network address); use {aligned}, got: {cidr!r}"
    if net.prefixlen not in VPC_PREFIX_LENGTHS:
        return (f"{prop}: prefix length must be /{VPC_PREFIX_LENGTHS[0]} to /{VPC_PREFIX_LENGTHS[-1]}, "
                f"got: {cidr!r}")
    return None
