"""AWS ParallelCluster releases and the training nodes' default image (no ``aws_cdk`` import).

The training constructs and the configuration's ``training`` section share these, so the release the
configuration accepts is one the construct deploys.
"""

from __future__ import annotations

import re

__all__ = ["PCLUSTER_MIN_MINOR", "DEFAULT_PCLUSTER_VERSION", "is_pcluster_release", "DLAMI_SSM_PARAMETER"]

#: The ParallelCluster CloudFormation custom resource exists from release 3.6.0 on.
#: Source: https://docs.aws.amazon.com/parallelcluster/latest/ug/cloudformation-v3.html
PCLUSTER_MIN_MINOR = 6
#: The release a ``provider`` deployed with the cluster uses unless told otherwise.
DEFAULT_PCLUSTER_VERSION = "3.16.1"

#: Deep Learning Base AMI (OSS NVIDIA driver, Amazon Linux 2023) SSM parameter. Not the Batch default: it has no
#: ECS agent (rule batch.mnp-ecs-agent-image); Batch uses ``instances.ECS_GPU_AMI_SSM_PARAMETER``.
DLAMI_SSM_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"


def is_pcluster_release(version: str) -> bool:
    """``3.<minor>.<patch>`` with minor >= 6: a ParallelCluster release with the CloudFormation custom resource."""
    m = re.fullmatch(r"3\.(\d+)\.\d+", version or "")
    return m is not None and int(m.group(1)) >= PCLUSTER_MIN_MINOR
