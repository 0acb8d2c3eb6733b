"""GPU training clusters: GPU nodes with EFA in one subnet and one cluster placement group, one class per engine.

- :class:`BatchTrainingCluster` (``batch.py``): AWS Batch multi-node parallel jobs, a queue and a job definition.
- :class:`SlurmTrainingCluster` (``slurm.py``): Slurm through AWS ParallelCluster 3.x, fed by a
  :class:`ParallelClusterProvider` (``provider.py``) or an existing provider's ServiceToken.
- :class:`GpuTrainingClusterBase` (``base.py``): what both share: the EFA security group (all traffic to and
  from itself), the placement group, the lake read policy, the Lustre ports opened on the cache, the
  instance-type rules.

Both take the cache as an :class:`~mlinfra.constructs.lustre_cache.ILustreCache` (made here or imported with
``LustreCache.from_file_system_attributes``) and the lake as an :class:`~mlinfra.constructs.data_lake.IDataLake`.

``GpuTrainingCluster(engine=..., batch=BatchOptions(...) | slurm=SlurmOptions(...))`` was replaced by these
classes after 0.1.0 (CHANGELOG.md, Unreleased); importing the old names raises an ImportError naming the new ones.
"""

from __future__ import annotations

from mlinfra.constructs.training_cluster.base import PCLUSTER_POLICY_PATH, GpuTrainingClusterBase, LakeAccess
from mlinfra.constructs.training_cluster.batch import (
    ECS_GPU_AMI_SSM_PARAMETER,
    BatchTrainingCluster,
    efa_environment,
    image_repository,
)
from mlinfra.constructs.training_cluster.provider import (
    PCLUSTER_PROVIDER_TEMPLATE,
    ParallelClusterProvider,
    validate_pcluster_version,
)
from mlinfra.constructs.training_cluster.slurm import (
    CapacityType,
    QueueUpdateStrategy,
    SlurmComputeResource,
    SlurmQueue,
    SlurmTrainingCluster,
    capacity_block_errors,
    cluster_name_errors,
)
from mlinfra.domain.parallelcluster import DLAMI_SSM_PARAMETER
from mlinfra.userdata import OnUnhealthy

__all__ = [
    "GpuTrainingClusterBase",
    "BatchTrainingCluster",
    "SlurmTrainingCluster",
    "ParallelClusterProvider",
    "SlurmQueue",
    "SlurmComputeResource",
    "CapacityType",
    "QueueUpdateStrategy",
    "OnUnhealthy",
    "LakeAccess",
    "DLAMI_SSM_PARAMETER",
    "ECS_GPU_AMI_SSM_PARAMETER",
    "PCLUSTER_POLICY_PATH",
    "PCLUSTER_PROVIDER_TEMPLATE",
    "capacity_block_errors",
    "cluster_name_errors",
    "efa_environment",
    "image_repository",
    "validate_pcluster_version",
]

#: Names of the former engine-flag API and what replaced them.
_REMOVED = {
    "GpuTrainingCluster": "BatchTrainingCluster(...) or SlurmTrainingCluster(...)",
    "TrainingEngine": "the class itself: BatchTrainingCluster or SlurmTrainingCluster",
    "BatchOptions": "BatchTrainingCluster's own keyword props (image=, instance_types=, nodes=, ...)",
    "SlurmOptions": "SlurmTrainingCluster's own keyword props (service_token=, cluster_name=, queues=, ...)",
}


def __getattr__(name: str) -> object:
    if name in _REMOVED:
        raise ImportError(f"mlinfra.constructs.training_cluster.{name} was removed: one class per engine replaces "
                          f"the engine flag; use {_REMOVED[name]} (CHANGELOG.md, docs/training.md)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
