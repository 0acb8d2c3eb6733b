"""What every GPU training cluster shares, whatever runs it (:class:`GpuTrainingClusterBase`).

EFA rules (FACTS.md): one subnet, one cluster placement group, a security group that allows all traffic to and
from itself (ingress AND egress). Every engine also gets EFA-capable NVIDIA types validated against the
accelerator table, read access to the lake prefixes given in one managed policy (under ``/parallelcluster/``,
the path the hosted ParallelCluster provider may attach), and the Lustre cache's ports opened to the cluster.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from mlinfra.constructs.data_lake import IDataLake, validate_prefix
from mlinfra.constructs.lustre_cache import ILustreCache
from mlinfra.constructs.wildcards import acknowledge_wildcards, ending
from mlinfra.domain import instances

__all__ = ["GpuTrainingClusterBase", "LakeAccess", "PCLUSTER_POLICY_PATH"]

#: Path of the managed policies a ParallelCluster cluster attaches: the AWS-hosted provider's default role may
#: attach only policies named or pathed ``parallelcluster*`` (rule ``parallelcluster.provider-policy-path``).
PCLUSTER_POLICY_PATH = "/parallelcluster/"


@dataclasses.dataclass(frozen=True)
class LakeAccess:
    """One lake zone prefix. :param zone: a lake zone. :param prefix: ``""`` (whole zone) or ``a/b/``."""

    zone: str
    prefix: str = ""


@jsii.implements(ec2.IConnectable)
class GpuTrainingClusterBase(Construct):
    """The parts every GPU training cluster shares; build one of its engines, :class:`BatchTrainingCluster` or
    :class:`SlurmTrainingCluster` (this class is abstract: it runs nothing by itself).

    :param vpc: the VPC. :default: required
    :param subnet: the ONE subnet of every node (the Lustre cache's subnet). :default: required
    :param instance_types: the node types, already validated by the engine. :default: required
    :param lustre: the cache to mount: a :class:`~mlinfra.constructs.lustre_cache.LustreCache` or an imported one
        (``LustreCache.from_file_system_attributes``); its security group is opened to this cluster. :default: None
    :param lustre_mount_point: :default: /fsx
    :param lake: the data lake (any :class:`~mlinfra.constructs.data_lake.IDataLake`). :default: None
    :param instance_read: lake prefixes the instances read (the instance policy). :default: none
    :param job_access: lake prefixes the engine's jobs read or write (validated here, granted by the engine).
        :default: none
    :param root_volume_size: encrypted root volume of every node. :default: 200 GiB
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        subnet: ec2.ISubnet,
        instance_types: Sequence[str],
        lustre: ILustreCache | None = None,
        lustre_mount_point: str = "/fsx",
        lake: IDataLake | None = None,
        instance_read: Sequence[LakeAccess] = (),
        job_access: Sequence[LakeAccess] = (),
        root_volume_size: cdk.Size | None = None,
    ) -> None:
        if type(self) is GpuTrainingClusterBase:
            raise TypeError("GpuTrainingClusterBase is abstract: build a BatchTrainingCluster or a SlurmTrainingCluster")
        super().__init__(scope, id)
        _validate_collaborators(lustre, lake)
        _validate_lake_access(lake, instance_read, job_access)
        self.root_volume_gib = _root_volume_gib(root_volume_size)
        self.instance_types = list(instance_types)
        self.vpc = vpc
        self.subnet = subnet
        self.lustre = lustre
        self.lustre_mount_point = lustre_mount_point
        self.lake = lake

        # --- EFA security group: all traffic to and from itself, ingress AND egress ---------------------
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
            description="GPU training nodes: all traffic within the group (EFA), HTTPS out, Lustre to the cache",
        )
        self.security_group.add_ingress_rule(self.security_group, ec2.Port.all_traffic(), "EFA and NCCL within the cluster")
        self.security_group.add_egress_rule(self.security_group, ec2.Port.all_traffic(), "EFA and NCCL within the cluster")
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
                                            "HTTPS to AWS APIs (VPC endpoints, S3 gateway) and ECR")
        self.connections = ec2.Connections(security_groups=[self.security_group])
        if lustre is not None:
            lustre.connections.allow_default_port_from(self, "Lustre from the GPU cluster")

        self.placement_group = ec2.PlacementGroup(self, "PlacementGroup", strategy=ec2.PlacementGroupStrategy.CLUSTER)

        # --- instance permissions: read the lake prefixes given ----------------------------------------------
        # Under /parallelcluster/: the hosted ParallelCluster provider attaches only such policies.
        self.instance_policy = iam.ManagedPolicy(
            self, "LakeReadPolicy", description="GPU training nodes: read the lake prefixes given",
            path=PCLUSTER_POLICY_PATH,
            statements=_lake_read_statements(lake, instance_read) or [
                iam.PolicyStatement(actions=["ec2:DescribeInstanceTypes"], resources=["*"])],
        )
        acknowledge_wildcards(
            self.instance_policy,
            "Read-only access to objects under the lake prefixes given ('<prefix>*'); without prefixes only "
            "ec2:DescribeInstanceTypes, which has no resource-level permissions.",
            resources=prefix_globs(instance_read) + (("*",) if not instance_read else ()))

    @property
    def placement_group_name(self) -> str:
        return self.placement_group.node.default_child.ref


# --------------------------------------------------------------------------------------------------
# shared helpers and validation (one rule per function)
# --------------------------------------------------------------------------------------------------


def validate_instance_types(types: Sequence[str], require_efa: bool, prop: str = "instance_types") -> None:
    """Every type is a known NVIDIA GPU type (with EFA when ``require_efa``), from the accelerator table."""
    if not types:
        raise ValueError(f"{prop} must list at least one GPU instance type, got: []")
    for t in types:
        try:
            instances.validate_ec2_instance_type(t, require_efa=require_efa, require_nvidia=True, prop=prop)
        except instances.InstanceTypeError as exc:
            raise ValueError(str(exc)) from None


def prefix_globs(accesses: Sequence[LakeAccess]) -> tuple[str, ...]:
    """The globs of the object wildcards of these lake prefixes in a cdk-nag finding id (ending ``/<prefix>*``)."""
    return tuple(sorted({ending(f"/{a.prefix}*") for a in accesses}))


def _validate_collaborators(lustre: object, lake: object) -> None:
    if lustre is not None and not isinstance(lustre, ILustreCache):
        raise ValueError("lustre must be an ILustreCache (a LustreCache or LustreCache.from_file_system_attributes), "
                         f"got: {lustre!r}")
    if lake is not None and not isinstance(lake, IDataLake):
        raise ValueError(f"lake must be an IDataLake (a DataLake or DataLake.from_lake_attributes), got: {lake!r}")


def _validate_lake_access(lake: IDataLake | None, *groups: Sequence[LakeAccess]) -> None:
    accesses = [a for g in groups for a in g]
    if accesses and lake is None:
        raise ValueError(f"lake is required to grant access to lake prefixes, got: {len(accesses)} prefix(es) and no lake")
    for a in accesses:
        if a.zone not in lake.zones:
            raise ValueError(f"LakeAccess zone must be one of {list(lake.zones)}, got: {a.zone!r}")
        validate_prefix(a.prefix or None, "LakeAccess prefix")


def _root_volume_gib(size: cdk.Size | None) -> int:
    root_gib = (size or cdk.Size.gibibytes(200)).to_gibibytes()
    if not 30 <= root_gib <= 16384:
        raise ValueError(f"root_volume_size must be 30 to 16384 GiB, got: {root_gib} GiB")
    return root_gib


def _lake_read_statements(lake: IDataLake | None, accesses: Sequence[LakeAccess]) -> list[iam.PolicyStatement]:
    """Read-only statements for lake prefixes: list the prefix, get its objects, decrypt with the lake key."""
    statements: list[iam.PolicyStatement] = []
    for access in accesses:
        bucket = lake.bucket(access.zone)
        statements.append(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:GetObjectVersion"],
            resources=[bucket.arn_for_objects(f"{access.prefix}*")]))
        statements.append(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{access.prefix}*"]}} if access.prefix else None))
    key = lake.encryption_key if accesses else None
    if key is not None:
        statements.append(iam.PolicyStatement(actions=["kms:Decrypt", "kms:DescribeKey"], resources=[key.key_arn]))
    return statements
