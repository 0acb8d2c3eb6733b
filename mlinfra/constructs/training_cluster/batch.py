"""BatchTrainingCluster: GPU nodes with EFA run by AWS Batch multi-node parallel jobs.

A managed EC2 compute environment (min vCPUs 0, on-demand only: multi-node parallel jobs do not run on Spot,
rule ``batch.mnp-no-spot``) launched from an L1-level launch template (image by SSM parameter, IMDSv2 required
with hop limit 1, encrypted root volume, the EFA interfaces of the type, the node bootstrap of
:mod:`mlinfra.userdata` as MIME user data, terminate on shutdown). The environment uses Batch's service-linked
role and the launch template's latest version number, so a new image or new user data rolls the fleet (rule
``batch.infrastructure-updates``). Batch rejects launch-template interfaces together with compute-environment
security groups, and the CDK construct always sends some, so with EFA the compute environment's list is emptied
and the group sits on the interfaces (without EFA the launch template has no interfaces and the group stays on
the compute environment). A job queue and a multi-node parallel job definition: EFA devices
``/dev/infiniband/uverbsN`` (READ/WRITE/MKNOD), shared memory, memlock unlimited, the Lustre mount mapped from
the host, the image, and a job role scoped to the lake prefixes it reads and writes. Batch multi-node jobs need
an AMI with ``ecs-init`` (rule ``batch.mnp-ecs-agent-image``): the default image is the ECS GPU-optimized AL2023
image, and the bootstrap's first part installs the EFA software and the Lustre client when the image lacks them
(idempotent, as the public Batch EFA templates do). Multi-node containers use awsvpc ENIs; with EFA the compute
environment lists no security group, so those ENIs land in the VPC's default group (rule
``batch.mnp-task-eni-security-groups``): the construct adds to that group (``task_security_group``) exactly what
a job needs: all traffic within the group (rendezvous, NCCL bootstrap) and HTTPS out (S3, KMS, ECR, CloudWatch
through the VPC endpoints).

Every node runs the GPU health check at boot (:func:`mlinfra.userdata.render_gpu_node_script`); a node failing
it acts as ``on_unhealthy`` says and counts in the ``UnhealthyNode`` metric behind ``unhealthy_node_alarm``.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import aws_cdk as cdk
from aws_cdk import aws_batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from mlinfra.constructs.common import BATCH_BASIC_MONITORING, acknowledge, is_token, path_in_errors
from mlinfra.constructs.data_lake import IDataLake
from mlinfra.constructs.lustre_cache import ILustreCache
from mlinfra.constructs.training_cluster.base import GpuTrainingClusterBase, LakeAccess, prefix_globs, validate_instance_types
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.domain import instances
from mlinfra.domain.choices import choice
from mlinfra.domain.rules import cite
from mlinfra.userdata import METRIC_NAMESPACE, OnUnhealthy, render_gpu_node_script, render_node_install_script

__all__ = ["BatchTrainingCluster", "ECS_GPU_AMI_SSM_PARAMETER", "efa_environment", "image_repository"]

#: ECS GPU-optimized Amazon Linux 2023 (has ecs-init, which Batch multi-node jobs need): the Batch default.
ECS_GPU_AMI_SSM_PARAMETER = instances.ECS_GPU_AMI_SSM_PARAMETER

_ECR_IMAGE_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/(?P<repo>[a-z0-9._/-]+)"
    r"(?::(?P<tag>[\w.-]{1,128})|@(?P<digest>sha256:[0-9a-f]{64}))?$")


class BatchTrainingCluster(GpuTrainingClusterBase):
    """A GPU cluster with EFA run by AWS Batch: compute environment, job queue, multi-node job definition.

    :param vpc: the VPC. :default: required
    :param subnet: the ONE subnet of every node (the Lustre cache's subnet). :default: required
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
    :param lustre: the cache to mount (any ``ILustreCache``; its security group is opened to this cluster).
        :default: None
    :param lustre_mount_point: :default: /fsx
    :param lake: the data lake (any ``IDataLake``). :default: None
    :param instance_read: lake prefixes the instances read (the instance role). :default: none
    :param efa: EFA interfaces on every node. :default: True
    :param machine_image: the node image; it must carry the ECS agent (the bootstrap installs the EFA software and
        the Lustre client when missing). :default: the ECS GPU-optimized AL2023 image by SSM parameter
    :param task_security_group: with EFA: the group the multi-node containers' awsvpc ENIs land in, the VPC's
        default group (the compute environment lists none); the construct adds the job's rules to it.
        :default: the VPC's default security group
    :param root_volume_size: encrypted gp3 root volume. :default: 200 GiB
    :param min_driver: minimum NVIDIA driver the health check accepts. :default: "" (any)
    :param on_unhealthy: what a node failing its health check does. :default: OnUnhealthy.SHUTDOWN (terminate
        and be replaced)
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        subnet: ec2.ISubnet,
        image: str,
        instance_types: Sequence[str] = ("p4d.24xlarge",),
        nodes: int = 2,
        max_vcpus: int | None = None,
        # No Spot: multi-node parallel jobs are not supported on Spot compute environments (rule batch.mnp-no-spot).
        shared_memory_mib: int | None = None,
        command: Sequence[str] = (),
        job_timeout: cdk.Duration | None = None,
        job_read: Sequence[LakeAccess] = (),
        job_write: Sequence[LakeAccess] = (),
        runnable_time_limit: cdk.Duration | None = None,
        dcgm_level: int = 2,
        unhealthy_nodes_per_hour: int = 2,
        lustre: ILustreCache | None = None,
        lustre_mount_point: str = "/fsx",
        lake: IDataLake | None = None,
        instance_read: Sequence[LakeAccess] = (),
        efa: bool = True,
        machine_image: ec2.IMachineImage | None = None,
        task_security_group: ec2.ISecurityGroup | None = None,
        root_volume_size: cdk.Size | None = None,
        min_driver: str = "",
        on_unhealthy: OnUnhealthy = OnUnhealthy.SHUTDOWN,
    ) -> None:
        instance_types = list(instance_types)
        runnable_time_limit = runnable_time_limit or cdk.Duration.hours(4)
        # One launch template serves every type, EFA on all of them.
        validate_instance_types(instance_types, efa)
        first = instances.get(instance_types[0])
        max_vcpus = max_vcpus if max_vcpus is not None else 4 * first.vcpu
        _validate_batch(image, instance_types, nodes, max_vcpus, shared_memory_mib, runnable_time_limit, dcgm_level,
                        unhealthy_nodes_per_hour, efa)
        on_unhealthy = choice(OnUnhealthy, on_unhealthy, "on_unhealthy")
        super().__init__(scope, id, vpc=vpc, subnet=subnet, instance_types=instance_types, lustre=lustre,
                         lustre_mount_point=lustre_mount_point, lake=lake, instance_read=instance_read,
                         job_access=(*job_read, *job_write), root_volume_size=root_volume_size)
        self.efa = efa
        self._build_instance_role()
        self._build_health_alarm(unhealthy_nodes_per_hour)
        self._build_launch_template(machine_image, dcgm_level, min_driver, on_unhealthy)
        self._build_compute_environment(max_vcpus, task_security_group)
        self._build_job_queue(runnable_time_limit)
        self._build_job_definition(image, nodes, shared_memory_mib, command, job_timeout or cdk.Duration.hours(24),
                                   job_read, job_write)

    # ------------------------------------------------------------------------------------------ parts

    def _build_instance_role(self) -> None:
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

    def _build_health_alarm(self, unhealthy_nodes_per_hour: int) -> None:
        # Health metric, tag and alarm: a node that keeps failing its checks cannot relaunch in a loop unseen.
        role = self.instance_role
        self.health_metric = cloudwatch.Metric(
            namespace=METRIC_NAMESPACE, metric_name="UnhealthyNode", dimensions_map={"Cluster": cdk.Names.unique_id(self)},
            statistic="Sum", period=cdk.Duration.hours(1))
        self.unhealthy_node_alarm = cloudwatch.Alarm(
            self, "UnhealthyNodeAlarm", metric=self.health_metric, threshold=unhealthy_nodes_per_hour,
            evaluation_periods=1, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{unhealthy_nodes_per_hour} or more GPU nodes failed their health check within an "
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

    def _build_launch_template(self, machine_image: ec2.IMachineImage | None, dcgm_level: int, min_driver: str,
                               on_unhealthy: OnUnhealthy) -> None:
        efa = self.efa
        script = render_gpu_node_script(
            profiles_by_type={t: instances.health_profile(t, efa) for t in self.instance_types},
            cluster_id=cdk.Names.unique_id(self), dcgm_level=dcgm_level,
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
                volume=ec2.BlockDeviceVolume.ebs(self.root_volume_gib, encrypted=True,
                                                 volume_type=ec2.EbsDeviceVolumeType.GP3, delete_on_termination=True))],
        )
        acknowledge(self.launch_template, "cfn-guard::ec2_launch_template_monitoring_enabled_check", BATCH_BASIC_MONITORING)
        acknowledge(self.launch_template, "cfn-guard::ec2_launch_template_public_ip_disabled_check",
                    "The EFA interfaces are in the private training subnet, which never maps public addresses")
        if efa:
            # EFA interfaces exist only in launch-template network interfaces (L1 level); the group sits on them.
            cfn_lt: ec2.CfnLaunchTemplate = self.launch_template.node.default_child
            interfaces = _network_interfaces(self.instance_types[0], self.subnet, self.security_group)
            cfn_lt.add_property_override("LaunchTemplateData.NetworkInterfaces", interfaces)

    def _build_compute_environment(self, max_vcpus: int, task_security_group: ec2.ISecurityGroup | None) -> None:
        ce = aws_batch.ManagedEc2EcsComputeEnvironment(
            self, "ComputeEnvironment",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=[self.subnet]),
            instance_types=[ec2.InstanceType(t) for t in self.instance_types],
            use_optimal_instance_classes=False,
            minv_cpus=0,
            maxv_cpus=max_vcpus,
            spot=False,  # rule batch.mnp-no-spot
            allocation_strategy=aws_batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
            launch_template=self.launch_template,
            placement_group=self.placement_group,
            instance_role=self.instance_role,
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
        if self.efa:
            cfn_ce.add_property_override("ComputeResources.SecurityGroupIds", [])
            # The task ENIs of multi-node containers land in the VPC's default group (rule
            # batch.mnp-task-eni-security-groups): give it what a training job needs, nothing more.
            self.task_security_group = task_security_group or ec2.SecurityGroup.from_security_group_id(
                self, "TaskSecurityGroup", _default_group_id(self.vpc), allow_all_outbound=False, mutable=True)
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

    def _build_job_queue(self, runnable_time_limit: cdk.Duration) -> None:
        cfn_ce: aws_batch.CfnComputeEnvironment = self.compute_environment.node.default_child
        self.job_queue = aws_batch.CfnJobQueue(
            self, "JobQueue", priority=1, state="ENABLED",
            compute_environment_order=[aws_batch.CfnJobQueue.ComputeEnvironmentOrderProperty(
                order=1, compute_environment=cfn_ce.ref)],  # Ref is the ARN (no GetAtt moto lacks)
            # A job that cannot be placed is cancelled instead of holding the queue (rule batch.job-state-time-limit).
            job_state_time_limit_actions=[
                aws_batch.CfnJobQueue.JobStateTimeLimitActionProperty(
                    action="CANCEL", state="RUNNABLE", reason=reason, max_time_seconds=int(limit.to_seconds()))
                for reason, limit in (
                    ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", runnable_time_limit),
                    ("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE", cdk.Duration.minutes(10)),
                    ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", cdk.Duration.minutes(10)))],
        )

    def _build_job_definition(self, image: str, nodes: int, shared_memory_mib: int | None, command: Sequence[str],
                              job_timeout: cdk.Duration, job_read: Sequence[LakeAccess],
                              job_write: Sequence[LakeAccess]) -> None:
        first = instances.get(self.instance_types[0])
        lake = self.lake
        job_role = iam.Role(self, "JobRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                            description="Training containers: the lake prefixes they read and write")
        for access in job_read:
            lake.grant_read(access.zone, job_role, access.prefix or None)
        for access in job_write:
            lake.grant_write(access.zone, job_role, access.prefix or None)
        acknowledge_wildcards(
            job_role, "Object grants end in '<prefix>*' (objects under the lake prefixes given); the s3:GetObject*, "
                      "GetBucket*, List*, Abort* and KMS GenerateDataKey*/ReEncrypt* wildcards are aws-cdk-lib's grant "
                      "actions on the lake's own buckets and key only.",
            actions=(*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS),
            resources=prefix_globs((*job_read, *job_write)))
        self.job_role = job_role

        linux = aws_batch.LinuxParameters(self, "LinuxParameters",
                                          shared_memory_size=cdk.Size.mebibytes(_shared_memory(shared_memory_mib, first)))
        efa_count = sum(1 for s in _layout(self.instance_types[0], self.efa) if s.interface_type != "interface")
        if efa_count:
            linux.add_devices(*[
                aws_batch.Device(host_path=f"/dev/infiniband/uverbs{i}", container_path=f"/dev/infiniband/uverbs{i}",
                                 permissions=[aws_batch.DevicePermission.READ, aws_batch.DevicePermission.WRITE,
                                              aws_batch.DevicePermission.MKNOD])
                for i in range(efa_count)])
        env = efa_environment(self.instance_types[0]) if self.efa else {}
        if self.lustre is not None:
            env["MLINFRA_LUSTRE_MOUNT"] = self.lustre_mount_point
        repository = image_repository(self, image)
        container = aws_batch.EcsEc2ContainerDefinition(
            self, "Container",
            # From an ECR repository, CDK grants the pull to the execution role (rule batch.execution-role-pulls-image).
            image=(ecs.ContainerImage.from_ecr_repository(repository[0], repository[1]) if repository
                   else ecs.ContainerImage.from_registry(image)),
            cpu=first.vcpu - 2,
            memory=cdk.Size.mebibytes(int(first.host_mem_mib * 0.9)),
            gpu=first.accelerators,
            command=list(command) or None,
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
            containers=[aws_batch.MultiNodeContainer(container=container, start_node=0, end_node=nodes - 1)],
            instance_type=ec2.InstanceType(self.instance_types[0]),
            main_node=0,
            timeout=job_timeout,
            propagate_tags=True,
        )


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
    if is_token(image):
        return None
    m = _ECR_IMAGE_RE.fullmatch(image)
    if m is None:
        return None
    partition = "aws-cn" if m["region"].startswith("cn-") else "aws"
    repo = ecr.Repository.from_repository_attributes(
        scope, "ImageRepository", repository_name=m["repo"],
        repository_arn=f"arn:{partition}:ecr:{m['region']}:{m['account']}:repository/{m['repo']}")
    return repo, (m["tag"] or m["digest"] or "latest")


def _default_group_id(vpc: ec2.IVpc) -> str:
    try:
        return vpc.vpc_default_security_group
    except Exception:  # imported VPCs do not know it (jsii raises)
        raise ValueError("task_security_group is required for a Batch cluster with EFA in an imported VPC (the "
                         "multi-node containers' ENIs land in the VPC's default group, whose id the import does "
                         f"not carry) {cite('batch.mnp-task-eni-security-groups')}") from None


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


def _shared_memory(shared_memory_mib: int | None, row: instances.AcceleratorInstance) -> int:
    if shared_memory_mib is not None:
        return shared_memory_mib
    return 49152 if row.family.startswith(("p5", "p6")) else 8192


def _validate_batch(image, instance_types, nodes, max_vcpus, shared_memory_mib, runnable_time_limit, dcgm_level,
                    unhealthy_nodes_per_hour, efa) -> None:
    if not image or not isinstance(image, str):
        raise ValueError(f"image must be a container image URI, got: {image!r}")
    if not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes must be an integer >= 1 (a literal: it numbers the job's node range), got: {nodes!r}")
    if efa and len({instances.max_efa_interfaces(t) for t in instance_types}) > 1:
        counts = {t: instances.max_efa_interfaces(t) for t in instance_types}
        raise ValueError(f"instance_types must share one EFA interface count (one launch template), got: {counts}")
    first = instances.get(instance_types[0])
    if not is_token(max_vcpus) and max_vcpus < nodes * first.vcpu:
        raise ValueError(f"max_vcpus must hold nodes x vCPUs of {first.instance_type} "
                         f"({nodes} x {first.vcpu} = {nodes * first.vcpu}), got: {max_vcpus}")
    limit = runnable_time_limit.to_seconds()
    if not 600 <= limit <= 86400:
        raise ValueError(f"runnable_time_limit must be 10 minutes to 24 hours (Batch's maxTimeSeconds), got: "
                         f"{limit:g} s")
    if dcgm_level not in (0, 1, 2, 3, 4):
        raise ValueError(f"dcgm_level must be 0 (none) to 4, got: {dcgm_level!r}")
    if not is_token(unhealthy_nodes_per_hour) and unhealthy_nodes_per_hour < 1:
        raise ValueError(f"unhealthy_nodes_per_hour must be >= 1, got: {unhealthy_nodes_per_hour}")
    if (shared_memory_mib is not None and not is_token(shared_memory_mib)
            and not 64 <= shared_memory_mib <= first.host_mem_mib // 2):
        raise ValueError(f"shared_memory_mib must be 64 to {first.host_mem_mib // 2} MiB (half the host memory "
                         f"of {first.instance_type}), got: {shared_memory_mib}")
