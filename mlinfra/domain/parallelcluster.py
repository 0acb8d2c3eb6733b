"""AWS ParallelCluster releases, its closed sets and the training nodes' default image (no ``aws_cdk`` import).

The training constructs and the configuration's ``training`` section share these, so the release and the values
the configuration accepts are the ones the construct deploys.
"""

from __future__ import annotations

import enum
import re

__all__ = ["PCLUSTER_MIN_MINOR", "DEFAULT_PCLUSTER_VERSION", "is_pcluster_release", "DLAMI_SSM_PARAMETER",
           "CapacityType", "QueueUpdateStrategy"]


class CapacityType(enum.StrEnum):
    """How a Slurm queue's nodes are bought (``SlurmQueues[].CapacityType``, ParallelCluster 3). A ``str``:
    ``CapacityType.SPOT == "SPOT"``.
    Source: https://docs.aws.amazon.com/parallelcluster/latest/ug/Scheduling-v3.html#yaml-Scheduling-SlurmQueues-CapacityType
    """

    #: On-Demand instances.
    ONDEMAND = "ONDEMAND"
    #: Spot instances (interrupted when EC2 needs the capacity back).
    SPOT = "SPOT"
    #: An EC2 Capacity Block for ML: a reservation id on every compute resource, MinCount = MaxCount > 0, no
    #: placement group (rule ``parallelcluster.capacity-block``).
    CAPACITY_BLOCK = "CAPACITY_BLOCK"


class QueueUpdateStrategy(enum.StrEnum):
    """What ParallelCluster does to running nodes when a stack update changes a queue
    (``SlurmSettings.QueueUpdateStrategy``, rule ``parallelcluster.queue-update-strategy``). A ``str``."""

    #: Nodes finish their jobs, then are replaced.
    DRAIN = "DRAIN"
    #: Nodes are terminated at once (jobs requeued).
    TERMINATE = "TERMINATE"
    #: The update waits for a stopped compute fleet (the provider does not stop it: updates then fail).
    COMPUTE_FLEET_STOP = "COMPUTE_FLEET_STOP"


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
