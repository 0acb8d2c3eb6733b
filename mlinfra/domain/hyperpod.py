"""SageMaker HyperPod rules: names, instance types, counts, Slurm node roles, deep health checks, lifecycle URIs.

Pure Python (botocore's model only, no CDK): the construct, the config and the tests share these checks. Each
check returns messages "<prop> must be <rule>, got: <value> (AWS rule <id>: <source>)"; the rows are in
:mod:`mlinfra.domain.rules` (section HyperPod).

Sources: the CreateCluster API reference and its shapes in botocore's SageMaker model (names, counts, the
instance types HyperPod offers, node types), ``ClusterLifeCycleConfig.SourceS3Uri`` (the ``s3://sagemaker-``
prefix), and the HyperPod guide's deep health check page (accelerated instances, the HyperPod AMI).
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Iterable

from mlinfra.domain import instances
from mlinfra.domain.rules import cite

__all__ = [
    "SlurmNodeType",
    "DeepHealthCheck",
    "MAX_INSTANCE_COUNT",
    "MAX_INSTANCE_GROUPS",
    "offered_instance_types",
    "accelerator_count",
    "efa_interfaces",
    "name_errors",
    "instance_type_errors",
    "instance_count_errors",
    "lifecycle_uri_errors",
    "deep_health_check_errors",
    "slurm_topology_errors",
]

#: ``ClusterInstanceGroupSpecification.InstanceCount`` range (botocore model).
MAX_INSTANCE_COUNT = 6758
#: ``CreateCluster.InstanceGroups`` size (botocore model).
MAX_INSTANCE_GROUPS = 100
_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")


class SlurmNodeType(enum.Enum):
    """``ClusterSlurmConfig.NodeType``: the role of an instance group in HyperPod's managed Slurm."""

    CONTROLLER = "Controller"
    LOGIN = "Login"
    COMPUTE = "Compute"


class DeepHealthCheck(enum.Enum):
    """``OnStartDeepHealthChecks`` values."""

    INSTANCE_STRESS = "InstanceStress"
    INSTANCE_CONNECTIVITY = "InstanceConnectivity"


@functools.cache
def offered_instance_types() -> frozenset[str]:
    """The instance types HyperPod offers (``ClusterInstanceType`` enum of botocore's SageMaker model)."""
    from mlinfra.domain.api_model import service_model

    return frozenset(service_model("sagemaker").shape_for("ClusterInstanceType").enum)


def _ec2_row(instance_type: str) -> instances.AcceleratorInstance | None:
    try:
        return instances.get(instance_type.removeprefix(instances.SAGEMAKER_PREFIX))
    except instances.InstanceTypeError:
        return None


def accelerator_count(instance_type: str) -> int:
    """GPUs or Trainium chips of an ``ml.`` type (0 for CPU types and types absent from the accelerator table)."""
    row = _ec2_row(instance_type)
    return row.accelerators if row else 0


def efa_interfaces(instance_type: str) -> int:
    """EFA interfaces of an ``ml.`` type (0 when it has none or is not in the accelerator table)."""
    row = _ec2_row(instance_type)
    return row.max_efa_interfaces if row else 0


def name_errors(prop: str, name: str) -> list[str]:
    """Cluster and instance-group names: 1-63 characters, letters, digits and inner hyphens."""
    if 1 <= len(name) <= 63 and _NAME_RE.fullmatch(name):
        return []
    return [f"{prop} must be 1-63 letters, digits and single inner hyphens ([a-zA-Z0-9](-*[a-zA-Z0-9])*), "
            f"got: {name!r} {cite('hyperpod.names')}"]


def instance_type_errors(prop: str, instance_type: str) -> list[str]:
    if instance_type in offered_instance_types():
        return []
    hint = "" if instance_type.startswith("ml.") else " (HyperPod types start with 'ml.')"
    return [f"{prop} must be an instance type HyperPod offers{hint}, got: {instance_type!r} "
            f"{cite('hyperpod.instance-type-offered')}"]


def instance_count_errors(prop: str, count: int, minimum: int = 0) -> list[str]:
    if isinstance(count, int) and not isinstance(count, bool) and minimum <= count <= MAX_INSTANCE_COUNT:
        return []
    return [f"{prop} must be an integer from {minimum} to {MAX_INSTANCE_COUNT}, got: {count!r} "
            f"{cite('hyperpod.instance-count')}"]


def lifecycle_uri_errors(prop: str, uri: str, *, explicit_grant: bool) -> list[str]:
    """Lifecycle scripts outside ``s3://sagemaker-*`` buckets need an explicit read grant on the role."""
    if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", uri or ""):
        return [f"{prop} must be an s3:// URI of a bucket prefix, got: {uri!r}"]
    if uri.startswith("s3://sagemaker-") or explicit_grant:
        return []
    return [f"{prop} must be in a bucket whose name starts with 'sagemaker-' unless the cluster role is granted "
            f"read on it explicitly (pass the bucket, not a URI), got: {uri!r} "
            f"{cite('hyperpod.lifecycle-source-s3-prefix')}"]


def deep_health_check_errors(prop: str, instance_type: str, checks: Iterable[DeepHealthCheck],
                             image_id: str | None) -> list[str]:
    checks = list(checks)
    if not checks:
        return []
    errors: list[str] = []
    if accelerator_count(instance_type) == 0:
        errors.append(f"{prop} runs on GPU and Trainium instance groups only, got: "
                      f"{[c.value for c in checks]} on {instance_type!r} {cite('hyperpod.deep-health-checks')}")
    if image_id not in (None, "default"):
        errors.append(f"{prop} needs the HyperPod public AMI (image_id unset or 'default'), got: image_id "
                      f"{image_id!r} {cite('hyperpod.deep-health-checks')}")
    return errors


def slurm_topology_errors(prop: str, groups: Iterable[tuple[str, SlurmNodeType, int, str | None]]) -> list[str]:
    """One controller group of one instance, at most one login group, at least one compute group; one partition
    per compute group (``ClusterSlurmConfig.PartitionNames`` holds at most one), none on the others."""
    groups = list(groups)
    errors: list[str] = []
    by_type = {t: [g for g in groups if g[1] is t] for t in SlurmNodeType}
    controllers = by_type[SlurmNodeType.CONTROLLER]
    if len(controllers) != 1 or controllers[0][2] != 1:
        # API-driven (managed) Slurm runs one controller node; multi-head controllers exist only with the legacy
        # provisioning-parameters configuration.
        errors.append(f"{prop} must have exactly one {SlurmNodeType.CONTROLLER.value} group with instance_count 1 "
                      f"(managed Slurm runs one controller node), "
                      f"got: {[(g[0], g[2]) for g in controllers]} {cite('hyperpod.slurm-topology')}")
    if len(by_type[SlurmNodeType.LOGIN]) > 1:
        errors.append(f"{prop} may have at most one {SlurmNodeType.LOGIN.value} group, got: "
                      f"{[g[0] for g in by_type[SlurmNodeType.LOGIN]]} {cite('hyperpod.slurm-topology')}")
    if not by_type[SlurmNodeType.COMPUTE]:
        errors.append(f"{prop} must have at least one {SlurmNodeType.COMPUTE.value} group, got: none "
                      f"{cite('hyperpod.slurm-topology')}")
    for name, node_type, _count, partition in groups:
        if node_type is SlurmNodeType.COMPUTE and not partition:
            errors.append(f"{prop}[{name}].partition must name the Slurm partition of a compute group, got: "
                          f"{partition!r} {cite('hyperpod.slurm-topology')}")
        if node_type is not SlurmNodeType.COMPUTE and partition:
            errors.append(f"{prop}[{name}].partition is for compute groups only, got: {partition!r} on a "
                          f"{node_type.value} group {cite('hyperpod.slurm-topology')}")
        if partition:
            errors += name_errors(f"{prop}[{name}].partition", partition)
    return errors
