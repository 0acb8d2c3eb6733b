"""SlurmTrainingCluster: GPU nodes with EFA run by Slurm through AWS ParallelCluster 3.x.

``Custom::PclusterCluster`` of the ParallelCluster provider stack (its ServiceToken is a prop, see
:class:`~mlinfra.constructs.training_cluster.ParallelClusterProvider`), with ``ClusterConfiguration`` generated
from typed props (head node, queues, compute resources with MinCount 0, EFA, the explicit placement group, shared
storage = the Lustre cache, ParallelCluster's GPU health checks, the queue update strategy). Checked against
ParallelCluster's rules: the cluster name differs from every stack name of the app, CAPACITY_BLOCK queues carry a
reservation id with MinCount = MaxCount and no placement group, the lake policy sits under the
``/parallelcluster/`` path the hosted provider may attach.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_ec2 as ec2
from constructs import Construct, IValidation

from mlinfra.constructs.common import is_token, path_in_errors
from mlinfra.constructs.data_lake import IDataLake
from mlinfra.constructs.lustre_cache import ILustreCache
from mlinfra.constructs.training_cluster.base import GpuTrainingClusterBase, LakeAccess, validate_instance_types
from mlinfra.domain import instances
from mlinfra.domain.choices import choice
from mlinfra.domain.parallelcluster import CapacityType, QueueUpdateStrategy
from mlinfra.domain.rules import cite

__all__ = ["SlurmTrainingCluster", "SlurmQueue", "SlurmComputeResource", "CapacityType", "QueueUpdateStrategy",
           "capacity_block_errors", "cluster_name_errors"]

_PC_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,24}$")
_CLUSTER_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,59}$")


@dataclasses.dataclass(frozen=True)
class SlurmComputeResource:
    """A ParallelCluster compute resource. :param min_count: :default: 0 (scale to zero)
    :param max_count: :default: 4. :param efa: :default: True
    :param capacity_reservation_id: the capacity block (``cr-...``) of a CAPACITY_BLOCK queue, required there
        (with min_count = max_count > 0). :default: None"""

    name: str
    instance_type: str
    min_count: int = 0
    max_count: int = 4
    efa: bool = True
    capacity_reservation_id: str | None = None


@dataclasses.dataclass(frozen=True)
class SlurmQueue:
    """A Slurm partition. :param capacity_type: how its nodes are bought. :default: CapacityType.ONDEMAND"""

    name: str
    compute_resources: Sequence[SlurmComputeResource]
    capacity_type: CapacityType = CapacityType.ONDEMAND


class SlurmTrainingCluster(GpuTrainingClusterBase):
    """A GPU cluster with EFA run by Slurm through AWS ParallelCluster 3.x (``Custom::PclusterCluster``).

    :param vpc: the VPC. :default: required
    :param subnet: the ONE subnet of every node (the Lustre cache's subnet). :default: required
    :param service_token: ServiceToken output of the ParallelCluster provider stack (an ARN, or a token such as
        an SSM parameter value or :attr:`ParallelClusterProvider.service_token`). :default: required
    :param cluster_name: ParallelCluster cluster name (immutable; not the name of any stack of the app).
        :default: required
    :param queues: Slurm queues. :default: required
    :param head_node_instance_type: :default: m6i.2xlarge
    :param os: ParallelCluster OS. :default: alinux2023
    :param retain_on_delete: keep the cluster when the stack is deleted. :default: False (compute is DESTROYED)
    :param queue_update_strategy: what a stack update that changes a queue does to running nodes.
        :default: QueueUpdateStrategy.DRAIN
    :param lustre: the cache to mount as shared storage (any ``ILustreCache``; its security group is opened to
        this cluster). :default: None
    :param lustre_mount_point: :default: /fsx
    :param lake: the data lake (any ``IDataLake``). :default: None
    :param instance_read: lake prefixes the nodes read (a policy every node role attaches). :default: none
    :param efa: EFA allowed on the nodes (each compute resource says whether it uses it). :default: True
    :param root_volume_size: encrypted root volume of the compute nodes. :default: 200 GiB
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        subnet: ec2.ISubnet,
        service_token: str,
        cluster_name: str,
        queues: Sequence[SlurmQueue],
        head_node_instance_type: str = "m6i.2xlarge",
        os: str = "alinux2023",
        retain_on_delete: bool = False,
        queue_update_strategy: QueueUpdateStrategy = QueueUpdateStrategy.DRAIN,
        lustre: ILustreCache | None = None,
        lustre_mount_point: str = "/fsx",
        lake: IDataLake | None = None,
        instance_read: Sequence[LakeAccess] = (),
        efa: bool = True,
        root_volume_size: cdk.Size | None = None,
    ) -> None:
        queues = _with_capacity_types(queues)
        _validate_slurm(service_token, cluster_name, queues, efa)  # EFA is per compute resource here
        errors = capacity_block_errors(queues)
        if errors:
            raise ValueError("; ".join(errors))
        types = [r.instance_type for q in queues for r in q.compute_resources]
        validate_instance_types(types, False)
        queue_update_strategy = choice(QueueUpdateStrategy, queue_update_strategy, "queue_update_strategy")
        super().__init__(scope, id, vpc=vpc, subnet=subnet, instance_types=types, lustre=lustre,
                         lustre_mount_point=lustre_mount_point, lake=lake, instance_read=instance_read,
                         root_volume_size=root_volume_size)
        self.queues = queues
        self.cluster_name = cluster_name
        self.cluster_configuration = self._configuration(queues, head_node_instance_type, os, queue_update_strategy)
        self.node.add_validation(_ClusterNameDiffersFromStacks(self, cluster_name))
        self.cluster_resource = cdk.CustomResource(
            self, "ParallelCluster",
            service_token=service_token,
            resource_type="Custom::PclusterCluster",
            properties={
                "ClusterName": cluster_name,
                "ClusterConfiguration": self.cluster_configuration,
                "DeletionPolicy": "Retain" if retain_on_delete else "Delete",
            },
            removal_policy=cdk.RemovalPolicy.RETAIN if retain_on_delete else cdk.RemovalPolicy.DESTROY,
        )

    def _configuration(self, queues: Sequence[SlurmQueue], head_node_instance_type: str, os: str,
                       queue_update_strategy: QueueUpdateStrategy) -> dict[str, Any]:
        """The ParallelCluster 3 cluster configuration (the YAML as an object; intrinsics allowed)."""
        # ParallelCluster's own node roles already carry SSM (AmazonSSMManagedInstanceCore) and the CloudWatch
        # agent (CloudWatchAgentServerPolicy); the lake read policy is the only addition.
        policies = [{"Policy": self.instance_policy.managed_policy_arn}]
        subnet_id = self.subnet.subnet_id
        sg_id = self.security_group.security_group_id
        rendered = []
        for q in queues:
            networking: dict[str, Any] = {"SubnetIds": [subnet_id], "AdditionalSecurityGroups": [sg_id]}
            if q.capacity_type is not CapacityType.CAPACITY_BLOCK:  # capacity blocks take no placement group
                networking["PlacementGroup"] = {"Enabled": True, "Id": self.placement_group_name}
            resources = []
            for r in q.compute_resources:
                resource: dict[str, Any] = {"Name": r.name, "InstanceType": r.instance_type, "MinCount": r.min_count,
                                            "MaxCount": r.max_count, "Efa": {"Enabled": r.efa}}
                if r.capacity_reservation_id:
                    resource["CapacityReservationTarget"] = {"CapacityReservationId": r.capacity_reservation_id}
                resources.append(resource)
            rendered.append({
                "Name": q.name,
                "CapacityType": q.capacity_type.value,
                "Networking": networking,
                "ComputeResources": resources,
                "ComputeSettings": {"LocalStorage": {"RootVolume": {"Size": self.root_volume_gib, "Encrypted": True}}},
                "Iam": {"AdditionalIamPolicies": policies},
                "HealthChecks": {"Gpu": {"Enabled": True}},
            })
        config: dict[str, Any] = {
            "Region": cdk.Aws.REGION,
            "Image": {"Os": os},
            "HeadNode": {
                "InstanceType": head_node_instance_type,
                "Networking": {"SubnetId": subnet_id, "AdditionalSecurityGroups": [sg_id]},
                "LocalStorage": {"RootVolume": {"Encrypted": True}},
                "Iam": {"AdditionalIamPolicies": policies},
                "Imds": {"Secured": True},
            },
            "Scheduling": {"Scheduler": "slurm", "SlurmQueues": rendered,
                           "SlurmSettings": {"QueueUpdateStrategy": queue_update_strategy.value}},
            "Monitoring": {"Logs": {"CloudWatch": {"Enabled": True, "RetentionInDays": 90}}},
        }
        if self.lustre is not None:
            config["SharedStorage"] = [{
                "MountDir": self.lustre_mount_point, "Name": "lustre-cache", "StorageType": "FsxLustre",
                "FsxLustreSettings": {"FileSystemId": self.lustre.file_system_id},
            }]
        return config


# --------------------------------------------------------------------------------------------------
# ParallelCluster's rules (one rule per function)
# --------------------------------------------------------------------------------------------------


def cluster_name_errors(cluster_name: str, stack_names: Sequence[str]) -> list[str]:
    """Rule ``parallelcluster.cluster-name-not-a-stack-name``: the cluster's own stack must not collide."""
    if is_token(cluster_name) or cluster_name not in stack_names:
        return []
    return [f"cluster_name must differ from every stack name of the app (ParallelCluster creates a "
            f"CloudFormation stack named after the cluster), got: {cluster_name!r}, the name of a stack "
            f"{cite('parallelcluster.cluster-name-not-a-stack-name')}"]


def capacity_block_errors(queues: Sequence[SlurmQueue]) -> list[str]:
    """Rule ``parallelcluster.capacity-block``: reservation id, MinCount = MaxCount > 0 (no placement group is
    rendered for such queues)."""
    errors: list[str] = []
    for q in queues:
        capacity_type = choice(CapacityType, q.capacity_type, f"slurm queue {q.name}: capacity_type")
        for r in q.compute_resources:
            where = f"slurm queue {q.name}/{r.name}"
            if capacity_type is not CapacityType.CAPACITY_BLOCK:
                if r.capacity_reservation_id:
                    errors.append(f"{where}: capacity_reservation_id is for CAPACITY_BLOCK queues, got: "
                                  f"{r.capacity_reservation_id!r} with capacity_type {capacity_type.value} "
                                  f"{cite('parallelcluster.capacity-block')}")
                continue
            rid = r.capacity_reservation_id
            if not rid or (not is_token(rid) and not re.fullmatch(r"cr-[0-9a-f]{17}", rid)):
                errors.append(f"{where}: capacity_reservation_id must be the capacity block's id (cr- and 17 hex "
                              f"digits) on a CAPACITY_BLOCK queue, got: {rid!r} {cite('parallelcluster.capacity-block')}")
            if not (r.min_count == r.max_count and r.max_count > 0):
                errors.append(f"{where}: min_count must equal max_count (> 0) on a CAPACITY_BLOCK queue, got: "
                              f"min_count={r.min_count}, max_count={r.max_count} {cite('parallelcluster.capacity-block')}")
    return errors


@jsii.implements(IValidation)
class _ClusterNameDiffersFromStacks:
    """At synth time, when the whole app exists: the cluster name is no stack name (pipeline stages included)."""

    def __init__(self, scope: Construct, cluster_name: str) -> None:
        self._scope, self._name = scope, cluster_name

    def validate(self) -> list[str]:
        names = [c.stack_name for c in self._scope.node.root.node.find_all() if isinstance(c, cdk.Stack)]
        return cluster_name_errors(self._name, names)


def _with_capacity_types(queues: Sequence[SlurmQueue]) -> list[SlurmQueue]:
    """The queues with ``capacity_type`` as a :class:`CapacityType` member (its value as a string is accepted)."""
    return [dataclasses.replace(q, capacity_type=choice(CapacityType, q.capacity_type,
                                                             f"slurm queue {q.name}: capacity_type"))
            for q in queues]


def _validate_slurm(service_token: str, cluster_name: str, queues: Sequence[SlurmQueue], efa: bool) -> None:
    if not service_token:
        raise ValueError(f"service_token must be the ParallelCluster provider's ServiceToken, got: {service_token!r}")
    if not is_token(cluster_name) and not _CLUSTER_NAME_RE.fullmatch(cluster_name):
        raise ValueError("cluster_name must start with a letter and hold up to 60 letters, digits or hyphens, "
                         f"got: {cluster_name!r}")
    if not queues:
        raise ValueError("queues must list at least one queue, got: []")
    names = [q.name for q in queues]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"slurm queue names must be unique, got duplicates: {dupes}")
    for q in queues:
        if not _PC_NAME_RE.fullmatch(q.name):
            raise ValueError(f"slurm queue name must be 1-25 lowercase letters, digits or hyphens starting with a "
                             f"letter, got: {q.name!r}")
        if not q.compute_resources:
            raise ValueError(f"slurm queue {q.name}: compute_resources must not be empty")
        rnames = [r.name for r in q.compute_resources]
        dupes = sorted({n for n in rnames if rnames.count(n) > 1})
        if dupes:
            raise ValueError(f"slurm queue {q.name}: compute resource names must be unique, got duplicates: {dupes}")
        for r in q.compute_resources:
            if not _PC_NAME_RE.fullmatch(r.name):
                raise ValueError(f"slurm compute resource name must be 1-25 lowercase letters, digits or hyphens "
                                 f"starting with a letter, got: {r.name!r}")
            if r.min_count < 0 or r.max_count < 1 or r.min_count > r.max_count:
                raise ValueError(f"slurm compute resource {q.name}/{r.name}: need 0 <= min_count <= max_count and "
                                 f"max_count >= 1, got: min_count={r.min_count}, max_count={r.max_count}")
            if r.efa and not efa:
                raise ValueError(f"slurm compute resource {q.name}/{r.name}: efa=True on a cluster built with efa=False")
            if r.efa:
                try:
                    instances.validate_ec2_instance_type(r.instance_type, require_efa=True,
                                                         prop=f"slurm compute resource {q.name}/{r.name}")
                except instances.InstanceTypeError as exc:
                    raise ValueError(str(exc)) from None
