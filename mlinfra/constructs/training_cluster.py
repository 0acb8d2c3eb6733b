"""GpuTrainingCluster: GPU nodes with EFA in one subnet and one cluster placement group, run by an existing
engine: AWS Batch (multi-node parallel jobs) or Slurm through AWS ParallelCluster 3.x.

What every engine gets (EFA rules, FACTS.md): one subnet, one cluster placement group, a security group that
allows all traffic to and from itself (ingress AND egress), EFA-capable NVIDIA types validated against the
accelerator table, an instance role with SSM, the CloudWatch agent and read access to the lake prefixes
given (nothing else), and access to the Lustre cache on its ports.

AWS Batch: a managed EC2 compute environment (min vCPUs 0, on-demand only: multi-node parallel jobs do not run
on Spot, rule ``batch.mnp-no-spot``) launched from an L1-level launch template (image by SSM parameter,
IMDSv2 required with hop limit 1, encrypted root volume, the EFA interfaces of the type, the node bootstrap of
:mod:`mlinfra.userdata` as MIME user data, terminate on shutdown). The environment uses Batch's service-linked
role and the launch template's latest version number, so a new image or new user data rolls the fleet
(rule ``batch.infrastructure-updates``). Batch rejects
launch-template interfaces together with compute-environment security groups, and the CDK construct always
sends some, so with EFA the compute environment's list is emptied and the group sits on the interfaces (without
EFA the launch template has no interfaces and the group stays on the compute environment). A job queue
and a multi-node parallel job definition: EFA devices ``/dev/infiniband/uverbsN`` (READ/WRITE/MKNOD), shared
memory, memlock unlimited, the Lustre mount mapped from the host, the image, and a job role scoped to the lake
prefixes it reads and writes. Batch multi-node jobs need an AMI with ``ecs-init`` (rule
``batch.mnp-ecs-agent-image``): the default image is the ECS GPU-optimized AL2023 image, and the bootstrap's
first part installs the EFA software and the Lustre client when the image lacks them (idempotent, as the
public Batch EFA templates do). Multi-node containers use awsvpc ENIs; with EFA the compute environment lists
no security group, so those ENIs land in the VPC's default group (rule ``batch.mnp-task-eni-security-groups``):
the construct adds to that group (``task_security_group``) exactly what a job needs: all traffic within the
group (rendezvous, NCCL bootstrap) and HTTPS out (S3, KMS, ECR, CloudWatch through the VPC endpoints).

Slurm: ``Custom::PclusterCluster`` of the ParallelCluster provider stack (its ServiceToken is a prop), with
``ClusterConfiguration`` generated from typed props (head node, queues, compute resources with MinCount 0,
EFA, the explicit placement group, shared storage = the Lustre cache, GPU health checks, the queue update
strategy). Checked against ParallelCluster's rules: the cluster name differs from every stack name of the app,
CAPACITY_BLOCK queues carry a reservation id with MinCount = MaxCount and no placement group, the lake policy
sits under the ``/parallelcluster/`` path the hosted provider may attach.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct, IValidation

from mlinfra.domain import instances
from mlinfra.domain.rules import cite
# DLAMI_SSM_PARAMETER: the AWS Deep Learning Base AMI (OSS NVIDIA driver, AL2023)
from mlinfra.domain.parallelcluster import DEFAULT_PCLUSTER_VERSION, DLAMI_SSM_PARAMETER, PCLUSTER_MIN_MINOR, is_pcluster_release
from mlinfra.constructs.common import BATCH_BASIC_MONITORING, acknowledge
from mlinfra.constructs.data_lake import DataLake, ImportedDataLake, validate_prefix
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.constructs.lustre_cache import LustreCache
from mlinfra.userdata import METRIC_NAMESPACE, OnFailure, render_gpu_node_script, render_node_install_script

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
    "PCLUSTER_POLICY_PATH",
    "QueueUpdateStrategy",
    "capacity_block_errors",
    "cluster_name_errors",
    "efa_environment",
    "image_repository",
]

#: ECS GPU-optimized Amazon Linux 2023 (has ecs-init, which Batch multi-node jobs need): the Batch default.
ECS_GPU_AMI_SSM_PARAMETER = instances.ECS_GPU_AMI_SSM_PARAMETER

#: Path of the managed policies a ParallelCluster cluster attaches: the AWS-hosted provider's default role may
#: attach only policies named or pathed ``parallelcluster*`` (rule ``parallelcluster.provider-policy-path``).
PCLUSTER_POLICY_PATH = "/parallelcluster/"

_ECR_IMAGE_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/(?P<repo>[a-z0-9._/-]+)"
    r"(?::(?P<tag>[\w.-]{1,128})|@(?P<digest>sha256:[0-9a-f]{64}))?$")

_PC_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,24}$")
_CLUSTER_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,59}$")


class TrainingEngine(enum.Enum):
    BATCH = "batch"
    SLURM = "slurm"


class QueueUpdateStrategy(enum.Enum):
    """What ParallelCluster does to running nodes when a stack update changes a queue
    (``SlurmSettings.QueueUpdateStrategy``, rule ``parallelcluster.queue-update-strategy``)."""

    #: Nodes finish their jobs, then are replaced.
    DRAIN = "DRAIN"
    #: Nodes are terminated at once (jobs requeued).
    TERMINATE = "TERMINATE"
    #: The update waits for a stopped compute fleet (the provider does not stop it: updates then fail).
    COMPUTE_FLEET_STOP = "COMPUTE_FLEET_STOP"


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
    :param shared_memory_mib: /dev/shm of the container. :default: 49152 on p5/p6, else 8192 (public samples)
    :param command: container command. :default: the image's
    :param job_timeout: :default: 24 hours
    :param job_read: lake prefixes the job reads. :default: none
    :param job_write: lake prefixes the job writes. :default: none
    :param runnable_time_limit: a job RUNNABLE this long for lack of capacity is cancelled (10 min to 24 h).
        :default: 4 hours
    :param dcgm_level: ``dcgmi diag -r`` level of the boot health check (0: none; skipped with a warning where
        DCGM is not installed). :default: 2
    :param unhealthy_nodes_per_hour: nodes failing their health check within an hour that raise the alarm.
        :default: 2
    """

    image: str
    instance_types: Sequence[str] = ("p4d.24xlarge",)
    nodes: int = 2
    max_vcpus: int | None = None
    # No Spot: multi-node parallel jobs are not supported on Spot compute environments (rule batch.mnp-no-spot).
    shared_memory_mib: int | None = None
    command: Sequence[str] = ()
    job_timeout: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(24))
    job_read: Sequence[LakeAccess] = ()
    job_write: Sequence[LakeAccess] = ()
    runnable_time_limit: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(4))
    dcgm_level: int = 2
    unhealthy_nodes_per_hour: int = 2


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
    :param queue_update_strategy: what a stack update that changes a queue does to running nodes.
        :default: QueueUpdateStrategy.DRAIN
    """

    service_token: str
    cluster_name: str
    queues: Sequence[SlurmQueue]
    head_node_instance_type: str = "m6i.2xlarge"
    os: str = "alinux2023"
    retain_on_delete: bool = False
    queue_update_strategy: QueueUpdateStrategy = QueueUpdateStrategy.DRAIN


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
    :param machine_image: the node image (Batch); it must carry the ECS agent (the bootstrap installs the EFA
        software and the Lustre client when missing). :default: the ECS GPU-optimized AL2023 image by SSM parameter
    :param task_security_group: Batch with EFA: the group the multi-node containers' awsvpc ENIs land in, the
        VPC's default group (the compute environment lists none); the construct adds the job's rules to it.
        :default: the VPC's default security group
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
        task_security_group: ec2.ISecurityGroup | None = None,
        root_volume_size: cdk.Size | None = None,
        min_driver: str = "",
        on_unhealthy: str = OnFailure.SHUTDOWN,
    ) -> None:
        super().__init__(scope, id)
        _validate_engine(engine, batch, slurm)
        if slurm is not None:
            _validate_slurm(slurm, efa)  # EFA is per compute resource there
            errors = capacity_block_errors(slurm.queues)
            if errors:
                raise ValueError(f"{self.node.path}: " + "; ".join(errors))
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
            resources=_prefix_globs(instance_read) + (("*",) if not instance_read else ()))

        self.job_queue: aws_batch.CfnJobQueue | None = None
        self.job_definition: aws_batch.MultiNodeJobDefinition | None = None
        self.compute_environment: aws_batch.ManagedEc2EcsComputeEnvironment | None = None
        self.cluster_resource: cdk.CustomResource | None = None
        if batch is not None:
            self._build_batch(vpc, batch, lake, efa, machine_image, root_gib, min_driver, on_unhealthy,
                              task_security_group)
        if slurm is not None:
            self._build_slurm(slurm, root_gib)

    @property
    def placement_group_name(self) -> str:
        return self.placement_group.node.default_child.ref

    # ------------------------------------------------------------------------------------------ Batch

    def _build_batch(self, vpc, opts: BatchOptions, lake, efa, machine_image, root_gib, min_driver, on_unhealthy,
                     task_security_group):
        first = instances.get(opts.instance_types[0])
        # Session Manager only (not AmazonSSMManagedInstanceCore, which reads every SSM parameter): the node
        # needs no parameter; the CloudWatch agent policy reads only AmazonCloudWatch-* parameters.
        session_policy = iam.ManagedPolicy(
            self, "SessionManagerPolicy", description="GPU Batch nodes: SSM Session Manager, nothing else of SSM",
            statements=[
                iam.PolicyStatement(actions=["ssm:UpdateInstanceInformation"], resources=[
                    cdk.Stack.of(self).format_arn(service="ec2", resource="instance", resource_name="*")]),
                iam.PolicyStatement(actions=["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                                             "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"],
                                    resources=["*"]),
            ])
        acknowledge_wildcards(
            session_policy, "Session Manager channels have no resource-level permissions (ssmmessages:*Channel on "
                            "'*'); UpdateInstanceInformation is limited to instances of this account and region.",
            resources=("*", ending(":instance/*")))
        role = iam.Role(
            self, "InstanceRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="GPU Batch nodes: Session Manager, CloudWatch agent, ECS agent, lake read",
            managed_policies=[
                session_policy,
                iam.ManagedPolicy.from_aws_managed_policy_name("CloudWatchAgentServerPolicy"),
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonEC2ContainerServiceforEC2Role"),
                self.instance_policy,
            ],
        )
        for name in ("CloudWatchAgentServerPolicy", "service-role/AmazonEC2ContainerServiceforEC2Role"):
            acknowledge(role, f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]",
                        "AWS managed policies for the node agents: the CloudWatch agent and the ECS agent that "
                        "Batch needs; lake access is in a separate prefix-scoped policy.")
        self.instance_role = role

        # Health metric, tag and alarm: a node that keeps failing its checks cannot relaunch in a loop unseen.
        self.health_metric = cloudwatch.Metric(
            namespace=METRIC_NAMESPACE, metric_name="UnhealthyNode", dimensions_map={"Cluster": cdk.Names.unique_id(self)},
            statistic="Sum", period=cdk.Duration.hours(1))
        self.unhealthy_node_alarm = cloudwatch.Alarm(
            self, "UnhealthyNodeAlarm", metric=self.health_metric, threshold=opts.unhealthy_nodes_per_hour,
            evaluation_periods=1, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{opts.unhealthy_nodes_per_hour} or more GPU nodes failed their health check within an "
                              "hour: nodes are being replaced in a loop (see /var/lib/mlinfra/gpu-health.json on one)")
        acknowledge(self.unhealthy_node_alarm, "cfn-guard::cloudwatch_alarm_action_check",
                    "The cluster construct owns no notification topic; the alarm is exposed (unhealthy_node_alarm) "
                    "for the stack to route with add_alarm_action")
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}}))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["ec2:CreateTags"], resources=[cdk.Stack.of(self).format_arn(
                service="ec2", resource="instance", resource_name="*")],
            conditions={"ForAllValues:StringEquals": {"aws:TagKeys": ["mlinfra:gpu-health"]}}))
        acknowledge_wildcards(
            role, "PutMetricData has no resource-level permissions (limited to the mlinfra/GpuHealth namespace by "
                  "condition); CreateTags on this account's instances is limited to the mlinfra:gpu-health key.",
            resources=("*", ending(":instance/*")))
        script = render_gpu_node_script(
            profiles_by_type={t: instances.health_profile(t, efa) for t in opts.instance_types},
            cluster_id=cdk.Names.unique_id(self), dcgm_level=opts.dcgm_level,
            lustre_dns_name=self.lustre.dns_name if self.lustre else "",
            lustre_mount_name=self.lustre.mount_name if self.lustre else "",
            lustre_mount_point=self.lustre_mount_point,
            efa_enabled=efa, min_driver=min_driver, on_failure=on_unhealthy,
        )
        user_data = ec2.MultipartUserData()
        # Part 1 installs what the ECS GPU image lacks (EFA software, Lustre client), skipping what is present.
        user_data.add_user_data_part(ec2.UserData.custom(render_node_install_script(efa_enabled=efa)),
                                     ec2.MultipartBody.SHELL_SCRIPT, True)
        user_data.add_user_data_part(ec2.UserData.custom(script), ec2.MultipartBody.SHELL_SCRIPT, True)
        self.launch_template = ec2.LaunchTemplate(
            self, "LaunchTemplate",
            machine_image=machine_image or ec2.MachineImage.from_ssm_parameter(ECS_GPU_AMI_SSM_PARAMETER),
            user_data=user_data,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,  # IMDSv2 only
            # Hop limit 1: containers have their own job role and must not reach the instance role through IMDS
            # (rule ec2.imds-hop-limit-containers); awsvpc task ENIs get their credentials from the ECS agent.
            http_put_response_hop_limit=1,
            instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.TERMINATE,
            block_devices=[ec2.BlockDevice(
                device_name="/dev/xvda",
                volume=ec2.BlockDeviceVolume.ebs(root_gib, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3,
                                                 delete_on_termination=True))],
        )
        acknowledge(self.launch_template, "cfn-guard::ec2_launch_template_monitoring_enabled_check", BATCH_BASIC_MONITORING)
        acknowledge(self.launch_template, "cfn-guard::ec2_launch_template_public_ip_disabled_check",
                    "The EFA interfaces are in the private training subnet, which never maps public addresses")
        if efa:
            # EFA interfaces exist only in launch-template network interfaces (L1 level); the group sits on them.
            cfn_lt: ec2.CfnLaunchTemplate = self.launch_template.node.default_child
            interfaces = _network_interfaces(opts.instance_types[0], self.subnet, self.security_group)
            cfn_lt.add_property_override("LaunchTemplateData.NetworkInterfaces", interfaces)

        max_vcpus = opts.max_vcpus if opts.max_vcpus is not None else 4 * first.vcpu
        ce = aws_batch.ManagedEc2EcsComputeEnvironment(
            self, "ComputeEnvironment",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=[self.subnet]),
            instance_types=[ec2.InstanceType(t) for t in opts.instance_types],
            use_optimal_instance_classes=False,
            minv_cpus=0,
            maxv_cpus=max_vcpus,
            spot=False,  # rule batch.mnp-no-spot
            allocation_strategy=aws_batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
            launch_template=self.launch_template,
            placement_group=self.placement_group,
            instance_role=role,
            security_groups=[self.security_group],
            # In-place infrastructure updates (rule batch.infrastructure-updates): the service-linked role, a
            # launch-template version that changes with every template change, running jobs drain first.
            replace_compute_environment=False,
            update_to_latest_image_version=True,
            terminate_on_update=False,
            update_timeout=cdk.Duration.minutes(30),
        )
        cfn_ce: aws_batch.CfnComputeEnvironment = ce.node.default_child
        # FACTS.md / LOCAL_AWS.md: the API's enum value is MANAGED (the construct writes "managed", which moto
        # rejects); the group goes on the launch template's interfaces, so the environment sends none.
        cfn_ce.add_property_override("Type", "MANAGED")
        # No ServiceRole: Batch then uses its service-linked role AWSServiceRoleForBatch, which infrastructure
        # updates require; the launch template by its latest version number, so each change rolls the fleet.
        cfn_ce.add_property_deletion_override("ServiceRole")
        cfn_lt_ref: ec2.CfnLaunchTemplate = self.launch_template.node.default_child
        cfn_ce.add_property_override("ComputeResources.LaunchTemplate", {
            "LaunchTemplateId": cfn_lt_ref.ref, "Version": cfn_lt_ref.attr_latest_version_number})
        if efa:
            cfn_ce.add_property_override("ComputeResources.SecurityGroupIds", [])
            # The task ENIs of multi-node containers land in the VPC's default group (rule
            # batch.mnp-task-eni-security-groups): give it what a training job needs, nothing more.
            self.task_security_group = task_security_group or ec2.SecurityGroup.from_security_group_id(
                self, "TaskSecurityGroup", _default_group_id(vpc), allow_all_outbound=False, mutable=True)
            tsg = self.task_security_group
            tsg.add_ingress_rule(tsg, ec2.Port.all_traffic(), "Multi-node job containers to each other")
            tsg.add_egress_rule(tsg, ec2.Port.all_traffic(), "Multi-node job containers to each other")
            tsg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
                                "Job containers: HTTPS to AWS APIs (S3, KMS, ECR, CloudWatch endpoints)")
        else:
            self.task_security_group = self.security_group
        # Ref of a placement group is its name (the construct writes GetAtt GroupName; same value).
        cfn_ce.add_property_override("ComputeResources.PlacementGroup", self.placement_group_name)
        self.compute_environment = ce

        self.job_queue = aws_batch.CfnJobQueue(
            self, "JobQueue", priority=1, state="ENABLED",
            compute_environment_order=[aws_batch.CfnJobQueue.ComputeEnvironmentOrderProperty(
                order=1, compute_environment=cfn_ce.ref)],  # Ref is the ARN (no GetAtt moto lacks)
            # A job that cannot be placed is cancelled instead of holding the queue (rule batch.job-state-time-limit).
            job_state_time_limit_actions=[
                aws_batch.CfnJobQueue.JobStateTimeLimitActionProperty(
                    action="CANCEL", state="RUNNABLE", reason=reason, max_time_seconds=int(limit.to_seconds()))
                for reason, limit in (
                    ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", opts.runnable_time_limit),
                    ("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE", cdk.Duration.minutes(10)),
                    ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", cdk.Duration.minutes(10)))],
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
        env = efa_environment(opts.instance_types[0]) if efa else {}
        if self.lustre is not None:
            env["MLINFRA_LUSTRE_MOUNT"] = self.lustre_mount_point
        repository = image_repository(self, opts.image)
        container = aws_batch.EcsEc2ContainerDefinition(
            self, "Container",
            # From an ECR repository, CDK grants the pull to the execution role (rule batch.execution-role-pulls-image).
            image=(ecs.ContainerImage.from_ecr_repository(repository[0], repository[1]) if repository
                   else ecs.ContainerImage.from_registry(opts.image)),
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
            container.execution_role, "The execution role writes the job's logs to the /aws/batch/job log group "
                                      "(log stream names are made by Batch at run time) and gets an ECR token "
                                      "(ecr:GetAuthorizationToken has no resource-level permissions).",
            resources=(ending(":log-group:/aws/batch/job:*"), "*"))
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
        self.cluster_name = opts.cluster_name
        self.node.add_validation(_ClusterNameDiffersFromStacks(self, opts.cluster_name))
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
            networking: dict[str, Any] = {"SubnetIds": [subnet_id], "AdditionalSecurityGroups": [sg_id]}
            if q.capacity_type != "CAPACITY_BLOCK":  # capacity blocks take no placement group
                networking["PlacementGroup"] = {"Enabled": True, "Id": self.placement_group_name}
            resources = []
            for r in q.compute_resources:
                resource: dict[str, Any] = {"Name": r.name, "InstanceType": r.instance_type, "MinCount": r.min_count,
                                            "MaxCount": r.max_count, "Efa": {"Enabled": r.efa}}
                if r.capacity_reservation_id:
                    resource["CapacityReservationTarget"] = {"CapacityReservationId": r.capacity_reservation_id}
                resources.append(resource)
            queues.append({
                "Name": q.name,
                "CapacityType": q.capacity_type,
                "Networking": networking,
                "ComputeResources": resources,
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
            "Scheduling": {"Scheduler": "slurm", "SlurmQueues": queues,
                           "SlurmSettings": {"QueueUpdateStrategy": opts.queue_update_strategy.value}},
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


def efa_environment(instance_type: str) -> dict[str, str]:
    """The libfabric/NCCL environment of an EFA job. ``FI_EFA_USE_DEVICE_RDMA`` stays unset: libfabric uses RDMA
    where the device has it and forcing it aborts on EFA devices without RDMA (rule
    ``batch.efa-no-forced-device-rdma``; :func:`mlinfra.domain.instances.efa_rdma_capable` says which)."""
    instances.get(instance_type)
    return {"FI_PROVIDER": "efa", "NCCL_DEBUG": "WARN"}


def image_repository(scope: Construct, image: str) -> tuple[ecr.IRepository, str] | None:
    """The ECR repository and tag (or digest) of an ECR image URI, so that the execution role is granted the pull
    on that repository (rule ``batch.execution-role-pulls-image``); None for an image of another registry.
    Cross-account repositories (the AWS Deep Learning Containers) are referenced by ARN."""
    if cdk.Token.is_unresolved(image):
        return None
    m = _ECR_IMAGE_RE.fullmatch(image)
    if m is None:
        return None
    partition = "aws-cn" if m["region"].startswith("cn-") else "aws"
    repo = ecr.Repository.from_repository_attributes(
        scope, "ImageRepository", repository_name=m["repo"],
        repository_arn=f"arn:{partition}:ecr:{m['region']}:{m['account']}:repository/{m['repo']}")
    return repo, (m["tag"] or m["digest"] or "latest")


def cluster_name_errors(cluster_name: str, stack_names: Sequence[str]) -> list[str]:
    """Rule ``parallelcluster.cluster-name-not-a-stack-name``: the cluster's own stack must not collide."""
    if cdk.Token.is_unresolved(cluster_name) or cluster_name not in stack_names:
        return []
    return [f"slurm.cluster_name must differ from every stack name of the app (ParallelCluster creates a "
            f"CloudFormation stack named after the cluster), got: {cluster_name!r}, the name of a stack "
            f"{cite('parallelcluster.cluster-name-not-a-stack-name')}"]


def capacity_block_errors(queues: Sequence[SlurmQueue]) -> list[str]:
    """Rule ``parallelcluster.capacity-block``: reservation id, MinCount = MaxCount > 0 (no placement group is
    rendered for such queues)."""
    errors: list[str] = []
    for q in queues:
        for r in q.compute_resources:
            where = f"slurm queue {q.name}/{r.name}"
            if q.capacity_type != "CAPACITY_BLOCK":
                if r.capacity_reservation_id:
                    errors.append(f"{where}: capacity_reservation_id is for CAPACITY_BLOCK queues, got: "
                                  f"{r.capacity_reservation_id!r} with capacity_type {q.capacity_type} "
                                  f"{cite('parallelcluster.capacity-block')}")
                continue
            rid = r.capacity_reservation_id
            if not rid or (not cdk.Token.is_unresolved(rid) and not re.fullmatch(r"cr-[0-9a-f]{17}", rid)):
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


def _default_group_id(vpc: ec2.IVpc) -> str:
    try:
        return vpc.vpc_default_security_group
    except Exception:  # imported VPCs do not know it (jsii raises)
        raise ValueError("task_security_group is required for a Batch cluster with EFA in an imported VPC (the "
                         "multi-node containers' ENIs land in the VPC's default group, whose id the import does "
                         f"not carry) {cite('batch.mnp-task-eni-security-groups')}") from None


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
    limit = opts.runnable_time_limit.to_seconds()
    if not 600 <= limit <= 86400:
        raise ValueError(f"batch.runnable_time_limit must be 10 minutes to 24 hours (Batch's maxTimeSeconds), got: "
                         f"{limit:g} s")
    if opts.dcgm_level not in (0, 1, 2, 3, 4):
        raise ValueError(f"batch.dcgm_level must be 0 (none) to 4, got: {opts.dcgm_level!r}")
    if opts.unhealthy_nodes_per_hour < 1:
        raise ValueError(f"batch.unhealthy_nodes_per_hour must be >= 1, got: {opts.unhealthy_nodes_per_hour}")
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
