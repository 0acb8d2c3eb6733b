"""GpuTrainingCluster: GPU nodes with EFA in one subnet and one cluster placement group, run by an existing
engine: AWS Batch (multi-node parallel jobs) or Slurm through AWS ParallelCluster 3.x.

What every engine gets (EFA rules, FACTS.md): one subnet, one cluster placement group, a security group that
allows all traffic to and from itself (ingress AND egress), EFA-capable NVIDIA types validated against the
accelerator table, an instance role with SSM, the CloudWatch agent and read access to the lake prefixes
given (nothing else), and access to the Lustre cache on its ports.

AWS Batch: a managed EC2 compute environment (min vCPUs 0, on-demand or spot) launched from an L1-level
launch template (image by SSM parameter, IMDSv2 required, encrypted root volume, the EFA interfaces of the
type, the node bootstrap of :mod:`mlinfra.userdata` as MIME user data, terminate on shutdown). Batch rejects
launch-template interfaces together with compute-environment security groups, and the CDK construct always
sends some, so with EFA the compute environment's list is emptied and the group sits on the interfaces (without
EFA the launch template has no interfaces and the group stays on the compute environment). A job queue
and a multi-node parallel job definition: EFA devices ``/dev/infiniband/uverbsN`` (READ/WRITE/MKNOD), shared
memory, memlock unlimited, the Lustre mount mapped from the host, the image, and a job role scoped to the lake
prefixes it reads and writes. Batch multi-node jobs need an AMI with ``ecs-init`` (Batch AMI specification):
the default image parameter is the Deep Learning Base AMI; pass ``machine_image`` for an ECS GPU image that
carries the EFA software and the Lustre client.

Slurm: ``Custom::PclusterCluster`` of the ParallelCluster provider stack (its ServiceToken is a prop), with
``ClusterConfiguration`` generated from typed props (head node, queues, compute resources with MinCount 0,
EFA, the explicit placement group, shared storage = the Lustre cache, GPU health checks).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from mlinfra.domain import instances
# DLAMI_SSM_PARAMETER: the AWS Deep Learning Base AMI (OSS NVIDIA driver, AL2023)
from mlinfra.domain.parallelcluster import DEFAULT_PCLUSTER_VERSION, DLAMI_SSM_PARAMETER, PCLUSTER_MIN_MINOR, is_pcluster_release
from mlinfra.constructs.common import acknowledge
from mlinfra.constructs.data_lake import DataLake, ImportedDataLake, validate_prefix
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.constructs.lustre_cache import LustreCache
from mlinfra.userdata import OnFailure, render_gpu_node_script

__all__ = [
    "GpuTrainingCluster",
    "ParallelClusterProvider",
    "TrainingEngine",
    "BatchOptions",
    "SlurmOptions",
    "SlurmQueue",
    "SlurmComputeResource",
    "LakeAccess",
    "DLAMI_SSM_PARAMETER",
    "ECS_GPU_AMI_SSM_PARAMETER",
]

#: ECS GPU-optimized Amazon Linux 2023 (has ecs-init, which Batch multi-node jobs need).
ECS_GPU_AMI_SSM_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"

_PC_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,24}$")
_CLUSTER_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,59}$")


class TrainingEngine(enum.Enum):
    BATCH = "batch"
    SLURM = "slurm"


@dataclasses.dataclass(frozen=True)
class LakeAccess:
    """One lake zone prefix. :param zone: a lake zone. :param prefix: ``""`` (whole zone) or ``a/b/``."""

    zone: str
    prefix: str = ""


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """AWS Batch engine.

    :param image: the training container image URI. :default: required
    :param instance_types: EFA-capable NVIDIA types; with EFA all must share one EFA interface count (one
        launch template). :default: p4d.24xlarge
    :param nodes: nodes of the multi-node parallel job. :default: 2
    :param max_vcpus: compute environment ceiling (min is 0). :default: 4 nodes of the first type
    :param spot: spot capacity (price-capacity-optimized) instead of on-demand (best-fit-progressive). :default: False
    :param shared_memory_mib: /dev/shm of the container. :default: 49152 on p5/p6, else 8192 (public samples)
    :param command: container command. :default: the image's
    :param job_timeout: :default: 24 hours
    :param job_read: lake prefixes the job reads. :default: none
    :param job_write: lake prefixes the job writes. :default: none
    """

    image: str
    instance_types: Sequence[str] = ("p4d.24xlarge",)
    nodes: int = 2
    max_vcpus: int | None = None
    spot: bool = False
    shared_memory_mib: int | None = None
    command: Sequence[str] = ()
    job_timeout: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(24))
    job_read: Sequence[LakeAccess] = ()
    job_write: Sequence[LakeAccess] = ()


@dataclasses.dataclass(frozen=True)
class SlurmComputeResource:
    """A ParallelCluster compute resource. :param min_count: :default: 0 (scale to zero)
    :param max_count: :default: 4. :param efa: :default: True"""

    name: str
    instance_type: str
    min_count: int = 0
    max_count: int = 4
    efa: bool = True


@dataclasses.dataclass(frozen=True)
class SlurmQueue:
    """A Slurm partition. :param capacity_type: ONDEMAND, SPOT or CAPACITY_BLOCK. :default: ONDEMAND"""

    name: str
    compute_resources: Sequence[SlurmComputeResource]
    capacity_type: str = "ONDEMAND"


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """Slurm through AWS ParallelCluster 3.x.

    :param service_token: ServiceToken output of the ParallelCluster provider stack (an ARN, or a token such as
        an SSM parameter value). :default: required
    :param cluster_name: ParallelCluster cluster name (immutable). :default: required
    :param queues: Slurm queues. :default: required
    :param head_node_instance_type: :default: m6i.2xlarge
    :param os: ParallelCluster OS. :default: alinux2023
    :param retain_on_delete: keep the cluster when the stack is deleted. :default: False (compute is DESTROYED)
    """

    service_token: str
    cluster_name: str
    queues: Sequence[SlurmQueue]
    head_node_instance_type: str = "m6i.2xlarge"
    os: str = "alinux2023"
    retain_on_delete: bool = False


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
    per region and release; ``service_token`` feeds ``SlurmOptions.service_token``.

    :param version: ParallelCluster release (3.6.0 or later). :default: 3.16.1
    :param additional_iam_policies: managed policy ARNs added to the provider's Lambda role (for example to let
        it attach policies to the head node). :default: none
    :param custom_lambda_role: a role replacing the provider's default Lambda role. :default: None
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


@jsii.implements(ec2.IConnectable)
class GpuTrainingCluster(Construct):
    """A GPU cluster with EFA on one engine (Batch or Slurm).

    :param vpc: the VPC. :default: required
    :param subnet: the ONE subnet of every node (the Lustre cache's subnet). :default: required
    :param engine: ``TrainingEngine.BATCH`` or ``TrainingEngine.SLURM``. :default: required
    :param batch: Batch options (engine BATCH only). :default: None
    :param slurm: Slurm options (engine SLURM only). :default: None
    :param lustre: the cache to mount (its security group is opened to this cluster). :default: None
    :param lustre_mount_point: :default: /fsx
    :param lake: the data lake (``DataLake`` or ``ImportedDataLake``). :default: None
    :param instance_read: lake prefixes the instances read (the instance role). :default: none
    :param efa: EFA interfaces on every node. :default: True
    :param machine_image: the node image (Batch). :default: the Deep Learning Base AMI by SSM parameter
    :param root_volume_size: encrypted gp3 root volume. :default: 200 GiB
    :param min_driver: minimum NVIDIA driver the health check accepts. :default: "" (any)
    :param on_unhealthy: ``OnFailure.SHUTDOWN`` (terminate and be replaced) or ``OnFailure.REPORT``.
        :default: SHUTDOWN
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        subnet: ec2.ISubnet,
        engine: TrainingEngine,
        batch: BatchOptions | None = None,
        slurm: SlurmOptions | None = None,
        lustre: LustreCache | None = None,
        lustre_mount_point: str = "/fsx",
        lake: DataLake | ImportedDataLake | None = None,
        instance_read: Sequence[LakeAccess] = (),
        efa: bool = True,
        machine_image: ec2.IMachineImage | None = None,
        root_volume_size: cdk.Size | None = None,
        min_driver: str = "",
        on_unhealthy: str = OnFailure.SHUTDOWN,
    ) -> None:
        super().__init__(scope, id)
        _validate_engine(engine, batch, slurm)
        if slurm is not None:
            _validate_slurm(slurm, efa)  # EFA is per compute resource there
        types = _instance_types(engine, batch, slurm)
        # Batch: one launch template serves every type, EFA on all of them.
        _validate_instance_types(types, efa and engine is TrainingEngine.BATCH)
        if batch is not None:
            _validate_batch(batch, efa)
        _validate_lake_access(lake, instance_read, *(batch.job_read, batch.job_write) if batch else ())
        root_gib = (root_volume_size or cdk.Size.gibibytes(200)).to_gibibytes()
        if not 30 <= root_gib <= 16384:
            raise ValueError(f"root_volume_size must be 30 to 16384 GiB, got: {root_gib} GiB")
        self.engine = engine
        self.instance_types = types
        self.subnet = subnet
        self.lustre = lustre
        self.lustre_mount_point = lustre_mount_point

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

        # --- instance permissions: SSM, CloudWatch agent, read the lake prefixes given ---------------------
        self.instance_policy = iam.ManagedPolicy(
            self, "LakeReadPolicy", description="GPU training nodes: read the lake prefixes given",
            statements=_lake_read_statements(lake, instance_read) or [
                iam.PolicyStatement(actions=["ec2:DescribeInstanceTypes"], resources=["*"])],
        )
        acknowledge_wildcards(
            self.instance_policy,
            "Read-only access to objects under the lake prefixes given ('<prefix>*'); without prefixes only "
            "ec2:DescribeInstanceTypes, which has no resource-level permissions.",
            resources=_prefix_globs(instance_read) + (("*",) if not instance_read else ()))

        self.job_queue: aws_batch.CfnJobQueue | None = None
        self.job_definition: aws_batch.MultiNodeJobDefinition | None = None
        self.compute_environment: aws_batch.ManagedEc2EcsComputeEnvironment | None = None
        self.cluster_resource: cdk.CustomResource | None = None
        if batch is not None:
            self._build_batch(vpc, batch, lake, efa, machine_image, root_gib, min_driver, on_unhealthy)
        if slurm is not None:
            self._build_slurm(slurm, root_gib)

    @property
    def placement_group_name(self) -> str:
        return self.placement_group.node.default_child.ref

    # ------------------------------------------------------------------------------------------ Batch

    def _build_batch(self, vpc, opts: BatchOptions, lake, efa, machine_image, root_gib, min_driver, on_unhealthy):
        first = instances.get(opts.instance_types[0])
        role = iam.Role(
            self, "InstanceRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="GPU Batch nodes: SSM, CloudWatch agent, ECS agent, lake read",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore"),
                iam.ManagedPolicy.from_aws_managed_policy_name("CloudWatchAgentServerPolicy"),
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonEC2ContainerServiceforEC2Role"),
                self.instance_policy,
            ],
        )
        for name in ("AmazonSSMManagedInstanceCore", "CloudWatchAgentServerPolicy",
                     "service-role/AmazonEC2ContainerServiceforEC2Role"):
            acknowledge(role, f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]",
                        "AWS managed policies for the node agents: SSM, the CloudWatch agent and the ECS agent that "
                        "Batch needs; lake access is in a separate prefix-scoped policy.")
        self.instance_role = role

        script = render_gpu_node_script(
            expected_gpus_by_type={t: instances.gpu_count(t) for t in opts.instance_types},
            lustre_dns_name=self.lustre.dns_name if self.lustre else "",
            lustre_mount_name=self.lustre.mount_name if self.lustre else "",
            lustre_mount_point=self.lustre_mount_point,
            efa_enabled=efa, min_driver=min_driver, on_failure=on_unhealthy,
        )
        user_data = ec2.MultipartUserData()
        user_data.add_user_data_part(ec2.UserData.custom(script), ec2.MultipartBody.SHELL_SCRIPT, True)
        self.launch_template = ec2.LaunchTemplate(
            self, "LaunchTemplate",
            machine_image=machine_image or ec2.MachineImage.from_ssm_parameter(DLAMI_SSM_PARAMETER),
            user_data=user_data,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,  # IMDSv2 only
            http_put_response_hop_limit=2,  # containers reach IMDSv2 through the docker bridge
            instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.TERMINATE,
            block_devices=[ec2.BlockDevice(
                device_name="/dev/xvda",
                volume=ec2.BlockDeviceVolume.ebs(root_gib, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3,
                                                 delete_on_termination=True))],
        )
        if efa:
            # EFA interfaces exist only in launch-template network interfaces (L1 level); the group sits on them.
            cfn_lt: ec2.CfnLaunchTemplate = self.launch_template.node.default_child
            interfaces = _network_interfaces(opts.instance_types[0], self.subnet, self.security_group)
            cfn_lt.add_property_override("LaunchTemplateData.NetworkInterfaces", interfaces)

        service_role = iam.Role(
            self, "BatchServiceRole", assumed_by=iam.ServicePrincipal("batch.amazonaws.com"),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSBatchServiceRole")],
        )
        acknowledge(service_role,
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSBatchServiceRole]",
                    "AWSBatchServiceRole is the AWS-maintained service role policy of AWS Batch.")
        max_vcpus = opts.max_vcpus if opts.max_vcpus is not None else 4 * first.vcpu
        ce = aws_batch.ManagedEc2EcsComputeEnvironment(
            self, "ComputeEnvironment",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=[self.subnet]),
            instance_types=[ec2.InstanceType(t) for t in opts.instance_types],
            use_optimal_instance_classes=False,
            minv_cpus=0,
            maxv_cpus=max_vcpus,
            spot=opts.spot,
            allocation_strategy=(aws_batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED if opts.spot
                                 else aws_batch.AllocationStrategy.BEST_FIT_PROGRESSIVE),
            launch_template=self.launch_template,
            placement_group=self.placement_group,
            instance_role=role,
            service_role=service_role,
            security_groups=[self.security_group],
            replace_compute_environment=False,
        )
        cfn_ce: aws_batch.CfnComputeEnvironment = ce.node.default_child
        # FACTS.md / LOCAL_AWS.md: the API's enum value is MANAGED (the construct writes "managed", which moto
        # rejects); the group goes on the launch template's interfaces, so the environment sends none.
        cfn_ce.add_property_override("Type", "MANAGED")
        if efa:
            cfn_ce.add_property_override("ComputeResources.SecurityGroupIds", [])
        # Ref of a placement group is its name (the construct writes GetAtt GroupName; same value).
        cfn_ce.add_property_override("ComputeResources.PlacementGroup", self.placement_group_name)
        self.compute_environment = ce

        self.job_queue = aws_batch.CfnJobQueue(
            self, "JobQueue", priority=1, state="ENABLED",
            compute_environment_order=[aws_batch.CfnJobQueue.ComputeEnvironmentOrderProperty(
                order=1, compute_environment=cfn_ce.ref)],  # Ref is the ARN (no GetAtt moto lacks)
        )

        job_role = iam.Role(self, "JobRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                            description="Training containers: the lake prefixes they read and write")
        for access in opts.job_read:
            lake.grant_read(access.zone, job_role, access.prefix or None)
        for access in opts.job_write:
            lake.grant_write(access.zone, job_role, access.prefix or None)
        acknowledge_wildcards(
            job_role, "Object grants end in '<prefix>*' (objects under the lake prefixes given); the s3:GetObject*, "
                      "GetBucket*, List*, Abort* and KMS GenerateDataKey*/ReEncrypt* wildcards are aws-cdk-lib's grant "
                      "actions on the lake's own buckets and key only.",
            actions=(*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS),
            resources=_prefix_globs((*opts.job_read, *opts.job_write)))
        self.job_role = job_role

        linux = aws_batch.LinuxParameters(self, "LinuxParameters",
                                      shared_memory_size=cdk.Size.mebibytes(_shared_memory(opts, first)))
        efa_count = sum(1 for s in _layout(opts.instance_types[0], efa) if s.interface_type != "interface")
        if efa_count:
            linux.add_devices(*[
                aws_batch.Device(host_path=f"/dev/infiniband/uverbs{i}", container_path=f"/dev/infiniband/uverbs{i}",
                             permissions=[aws_batch.DevicePermission.READ, aws_batch.DevicePermission.WRITE,
                                          aws_batch.DevicePermission.MKNOD])
                for i in range(efa_count)])
        env = {"FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1", "NCCL_DEBUG": "WARN"} if efa else {}
        if self.lustre is not None:
            env["MLINFRA_LUSTRE_MOUNT"] = self.lustre_mount_point
        container = aws_batch.EcsEc2ContainerDefinition(
            self, "Container",
            image=ecs.ContainerImage.from_registry(opts.image),
            cpu=first.vcpu - 2,
            memory=cdk.Size.mebibytes(int(first.host_mem_mib * 0.9)),
            gpu=first.accelerators,
            command=list(opts.command) or None,
            job_role=job_role,
            linux_parameters=linux,
            ulimits=[aws_batch.Ulimit(name=aws_batch.UlimitName.MEMLOCK, hard_limit=-1, soft_limit=-1)],
            environment=env or None,
            volumes=([aws_batch.EcsVolume.host(name="lustre", host_path=self.lustre_mount_point,
                                           container_path=self.lustre_mount_point)] if self.lustre else None),
        )
        acknowledge_wildcards(
            container.execution_role, "The execution role writes the job's logs to the /aws/batch/job log group: "
                                      "log stream names are made by Batch at run time.",
            resources=(ending(":log-group:/aws/batch/job:*"),))
        self.job_definition = aws_batch.MultiNodeJobDefinition(
            self, "JobDefinition",
            containers=[aws_batch.MultiNodeContainer(container=container, start_node=0, end_node=opts.nodes - 1)],
            instance_type=ec2.InstanceType(opts.instance_types[0]),
            main_node=0,
            timeout=opts.job_timeout,
            propagate_tags=True,
        )

    # ------------------------------------------------------------------------------------------ Slurm

    def _build_slurm(self, opts: SlurmOptions, root_gib: int) -> None:
        self.cluster_configuration = self.slurm_configuration(opts, root_gib)
        self.cluster_resource = cdk.CustomResource(
            self, "ParallelCluster",
            service_token=opts.service_token,
            resource_type="Custom::PclusterCluster",
            properties={
                "ClusterName": opts.cluster_name,
                "ClusterConfiguration": self.cluster_configuration,
                "DeletionPolicy": "Retain" if opts.retain_on_delete else "Delete",
            },
            removal_policy=cdk.RemovalPolicy.RETAIN if opts.retain_on_delete else cdk.RemovalPolicy.DESTROY,
        )

    def slurm_configuration(self, opts: SlurmOptions, root_gib: int = 200) -> dict[str, Any]:
        """The ParallelCluster 3 cluster configuration (the YAML as an object; intrinsics allowed)."""
        # ParallelCluster's own node roles already carry SSM (AmazonSSMManagedInstanceCore) and the CloudWatch
        # agent (CloudWatchAgentServerPolicy); the lake read policy is the only addition.
        policies = [{"Policy": self.instance_policy.managed_policy_arn}]
        subnet_id = self.subnet.subnet_id
        sg_id = self.security_group.security_group_id
        queues = []
        for q in opts.queues:
            queues.append({
                "Name": q.name,
                "CapacityType": q.capacity_type,
                "Networking": {
                    "SubnetIds": [subnet_id],
                    "AdditionalSecurityGroups": [sg_id],
                    "PlacementGroup": {"Enabled": True, "Id": self.placement_group_name},
                },
                "ComputeResources": [
                    {"Name": r.name, "InstanceType": r.instance_type, "MinCount": r.min_count,
                     "MaxCount": r.max_count, "Efa": {"Enabled": r.efa}}
                    for r in q.compute_resources
                ],
                "ComputeSettings": {"LocalStorage": {"RootVolume": {"Size": root_gib, "Encrypted": True}}},
                "Iam": {"AdditionalIamPolicies": policies},
                "HealthChecks": {"Gpu": {"Enabled": True}},
            })
        config: dict[str, Any] = {
            "Region": cdk.Aws.REGION,
            "Image": {"Os": opts.os},
            "HeadNode": {
                "InstanceType": opts.head_node_instance_type,
                "Networking": {"SubnetId": subnet_id, "AdditionalSecurityGroups": [sg_id]},
                "LocalStorage": {"RootVolume": {"Encrypted": True}},
                "Iam": {"AdditionalIamPolicies": policies},
                "Imds": {"Secured": True},
            },
            "Scheduling": {"Scheduler": "slurm", "SlurmQueues": queues},
            "Monitoring": {"Logs": {"CloudWatch": {"Enabled": True, "RetentionInDays": 90}}},
        }
        if self.lustre is not None:
            config["SharedStorage"] = [{
                "MountDir": self.lustre_mount_point, "Name": "lustre-cache", "StorageType": "FsxLustre",
                "FsxLustreSettings": {"FileSystemId": self.lustre.file_system_id},
            }]
        return config


# --------------------------------------------------------------------------------------------------
# helpers and validation (one rule per function)
# --------------------------------------------------------------------------------------------------


def _prefix_globs(accesses: Sequence[LakeAccess]) -> tuple[str, ...]:
    """The globs of the object wildcards of these lake prefixes in a cdk-nag finding id (ending ``/<prefix>*``)."""
    return tuple(sorted({ending(f"/{a.prefix}*") for a in accesses}))


def _layout(instance_type: str, efa: bool) -> list[instances.InterfaceSlot]:
    if not efa:
        return [instances.InterfaceSlot(0, 0, "interface")]
    return instances.efa_interface_layout(instance_type)


def _network_interfaces(instance_type: str, subnet: ec2.ISubnet, sg: ec2.ISecurityGroup) -> list[dict]:
    out = []
    for slot in _layout(instance_type, True):
        iface: dict[str, Any] = {
            "NetworkCardIndex": slot.network_card_index,
            "DeviceIndex": slot.device_index,
            "SubnetId": subnet.subnet_id,
            "Groups": [sg.security_group_id],
            "DeleteOnTermination": True,
        }
        if slot.interface_type != "interface":
            iface["InterfaceType"] = slot.interface_type
        out.append(iface)
    return out


def _shared_memory(opts: BatchOptions, row: instances.AcceleratorInstance) -> int:
    if opts.shared_memory_mib is not None:
        return opts.shared_memory_mib
    return 49152 if row.family.startswith(("p5", "p6")) else 8192


def _lake_read_statements(lake, accesses: Sequence[LakeAccess]) -> list[iam.PolicyStatement]:
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
    key = getattr(lake, "encryption_key", None) if accesses else None
    if key is not None:
        statements.append(iam.PolicyStatement(actions=["kms:Decrypt", "kms:DescribeKey"], resources=[key.key_arn]))
    return statements


def _validate_engine(engine, batch_opts, slurm_opts) -> None:
    if not isinstance(engine, TrainingEngine):
        raise ValueError(f"engine must be TrainingEngine.BATCH or TrainingEngine.SLURM, got: {engine!r}")
    if engine is TrainingEngine.BATCH and (batch_opts is None or slurm_opts is not None):
        raise ValueError("engine BATCH takes batch options and no slurm options, got: "
                         f"batch={'set' if batch_opts else None}, slurm={'set' if slurm_opts else None}")
    if engine is TrainingEngine.SLURM and (slurm_opts is None or batch_opts is not None):
        raise ValueError("engine SLURM takes slurm options and no batch options, got: "
                         f"batch={'set' if batch_opts else None}, slurm={'set' if slurm_opts else None}")


def _instance_types(engine, batch_opts, slurm_opts) -> list[str]:
    if engine is TrainingEngine.BATCH:
        return list(batch_opts.instance_types)
    return [r.instance_type for q in slurm_opts.queues for r in q.compute_resources]


def _validate_instance_types(types: Sequence[str], efa: bool) -> None:
    if not types:
        raise ValueError("instance_types must list at least one GPU instance type, got: []")
    for t in types:
        try:
            instances.validate_ec2_instance_type(t, require_efa=efa, require_nvidia=True, prop="instance_types")
        except instances.InstanceTypeError as exc:
            raise ValueError(str(exc)) from None


def _validate_lake_access(lake, *groups: Sequence[LakeAccess]) -> None:
    accesses = [a for g in groups for a in g]
    if accesses and lake is None:
        raise ValueError(f"lake is required to grant access to lake prefixes, got: {len(accesses)} prefix(es) and no lake")
    for a in accesses:
        if a.zone not in lake.zones:
            raise ValueError(f"LakeAccess zone must be one of {list(lake.zones)}, got: {a.zone!r}")
        validate_prefix(a.prefix or None, "LakeAccess prefix")


def _validate_batch(opts: BatchOptions, efa: bool) -> None:
    if not opts.image or not isinstance(opts.image, str):
        raise ValueError(f"batch.image must be a container image URI, got: {opts.image!r}")
    if opts.nodes < 1:
        raise ValueError(f"batch.nodes must be >= 1, got: {opts.nodes}")
    if efa and len({instances.max_efa_interfaces(t) for t in opts.instance_types}) > 1:
        counts = {t: instances.max_efa_interfaces(t) for t in opts.instance_types}
        raise ValueError("batch.instance_types must share one EFA interface count (one launch template), got: "
                         f"{counts}")
    first = instances.get(opts.instance_types[0])
    max_vcpus = opts.max_vcpus if opts.max_vcpus is not None else 4 * first.vcpu
    if max_vcpus < opts.nodes * first.vcpu:
        raise ValueError(f"batch.max_vcpus must hold nodes x vCPUs of {first.instance_type} "
                         f"({opts.nodes} x {first.vcpu} = {opts.nodes * first.vcpu}), got: {max_vcpus}")
    if opts.shared_memory_mib is not None and not 64 <= opts.shared_memory_mib <= first.host_mem_mib // 2:
        raise ValueError(f"batch.shared_memory_mib must be 64 to {first.host_mem_mib // 2} MiB (half the host memory "
                         f"of {first.instance_type}), got: {opts.shared_memory_mib}")


def _validate_slurm(opts: SlurmOptions, efa: bool) -> None:
    if not opts.service_token:
        raise ValueError("slurm.service_token must be the ParallelCluster provider's ServiceToken, got: ''")
    if not cdk.Token.is_unresolved(opts.cluster_name) and not _CLUSTER_NAME_RE.fullmatch(opts.cluster_name):
        raise ValueError("slurm.cluster_name must start with a letter and hold up to 60 letters, digits or hyphens, "
                         f"got: {opts.cluster_name!r}")
    if not opts.queues:
        raise ValueError("slurm.queues must list at least one queue, got: []")
    names = [q.name for q in opts.queues]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"slurm queue names must be unique, got duplicates: {dupes}")
    for q in opts.queues:
        if not _PC_NAME_RE.fullmatch(q.name):
            raise ValueError(f"slurm queue name must be 1-25 lowercase letters, digits or hyphens starting with a "
                             f"letter, got: {q.name!r}")
        if q.capacity_type not in ("ONDEMAND", "SPOT", "CAPACITY_BLOCK"):
            raise ValueError(f"slurm queue {q.name}: capacity_type must be ONDEMAND, SPOT or CAPACITY_BLOCK, got: "
                             f"{q.capacity_type!r}")
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
