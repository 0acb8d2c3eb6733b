"""HyperPodCluster: a SageMaker HyperPod cluster with HyperPod's managed Slurm, in the training subnet, with
the Lustre cache mounted on every login and compute node and lifecycle scripts shipped in the wheel.

Why L1 (``sagemaker.CfnCluster``): aws-cdk-lib has no L2 for HyperPod. Everything around it follows the L2 style:
typed instance groups validated against the service's own model (:mod:`mlinfra.domain.hyperpod`), a security
group that allows all traffic within itself (EFA) and opens the Lustre ports on the cache, a least-privilege
execution role built from grants, and the lifecycle scripts uploaded with ``BucketDeployment``.

Choices (see docs/training.md, "SageMaker HyperPod"):

- Managed Slurm (``Orchestrator.Slurm``, ``SlurmConfigStrategy: Managed``): each instance group says its node
  type (Controller, Login, Compute) and its partition; HyperPod writes ``slurm.conf``. No provisioning
  parameters file.
- Lifecycle scripts live in a bucket the caller owns (the lake's artifacts zone in the reference app), not in a
  ``sagemaker-*`` bucket: the execution role gets an explicit read grant on exactly that prefix, which is the
  documented alternative to the name prefix (``ClusterLifeCycleConfig.SourceS3Uri``).
- The cache is mounted through the instance group's storage configuration (``FsxLustreConfig``) and checked
  (mounted if absent) by the ``lustre`` lifecycle step, so a node never starts a job without it. Its data is
  the cache's: the file system is RETAINED by :class:`~mlinfra.constructs.lustre_cache.LustreCache`, linked to
  the lake by data repository associations.
- Node recovery is Automatic and GPU/Trainium groups run the InstanceStress and InstanceConnectivity deep
  health checks on start, by default.
- Compute groups may hold 0 instances at rest; the controller holds exactly one.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from mlinfra.constructs.common import acknowledge, check_between, is_token, path_in_errors
from mlinfra.constructs.data_lake import IDataLake, validate_prefix
from mlinfra.constructs.lustre_cache import ILustreCache
from mlinfra.constructs.training_cluster import LakeAccess
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards
from mlinfra.domain import hyperpod as rules
from mlinfra.domain.choices import choice
from mlinfra.domain.hyperpod import DeepHealthCheck, SlurmNodeType
from mlinfra.userdata.hyperpod import scripts_dir

__all__ = [
    "HyperPodCluster",
    "HyperPodInstanceGroup",
    "HyperPodLifecycle",
    "HyperPodLakeAccess",
    "HyperPodSoftwareUpdates",
    "NodeRecovery",
    "SlurmNodeType",
    "DeepHealthCheck",
    "DEFAULT_EXPORTER_IMAGES",
]

#: Exporter images the ``exporters`` step runs (pinned; override with ``exporter_images``).
DEFAULT_EXPORTER_IMAGES: dict[str, str] = {
    "node": "quay.io/prometheus/node-exporter:v1.9.1",
    "dcgm": "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04",
}
#: enroot and pyxis releases the ``containers`` step installs.
ENROOT_VERSION = "3.5.0"
PYXIS_VERSION = "0.20.0"
_ENTRY = "on_init_complete.sh"


class NodeRecovery(enum.StrEnum):
    """``NodeRecovery``: replace faulty nodes automatically, or leave them to the operator (botocore's SageMaker
    ``ClusterNodeRecovery`` values; a test compares them). A ``str``: ``NodeRecovery.NONE == "None"``."""

    AUTOMATIC = "Automatic"
    NONE = "None"


#: One lake zone prefix the nodes read or the jobs write: the training clusters' ``LakeAccess``.
HyperPodLakeAccess = LakeAccess


@dataclasses.dataclass(frozen=True)
class HyperPodInstanceGroup:
    """One HyperPod instance group.

    :param name: instance-group name (1-63 letters, digits, inner hyphens). :default: required
    :param instance_type: an ``ml.`` type HyperPod offers. :default: required
    :param node_type: the group's Slurm role. :default: COMPUTE
    :param instance_count: instances (0 allowed for compute groups: none at rest). :default: 1
    :param partition: Slurm partition of a compute group. :default: None (required for compute groups)
    :param deep_health_checks: on-start deep health checks; None gives both checks on GPU/Trainium groups and
        none on others. :default: None
    :param threads_per_core: 1 (no hyperthreading) or 2. :default: None (the type's default)
    :param ebs_volume_size_gib: an extra EBS volume per node (mounted at /opt/sagemaker). :default: None
    :param training_plan_arn: a SageMaker training plan reserving the capacity. :default: None
    :param image_id: a custom AMI; None (or ``"default"``) is HyperPod's current AMI, which deep health checks
        need. :default: None
    :param mount_lustre: mount the cache on this group's nodes (the controller keeps the job bridge's state there).
        :default: True
    """

    name: str
    instance_type: str
    node_type: SlurmNodeType = SlurmNodeType.COMPUTE
    instance_count: int = 1
    partition: str | None = None
    deep_health_checks: Sequence[DeepHealthCheck] | None = None
    threads_per_core: int | None = None
    ebs_volume_size_gib: int | None = None
    training_plan_arn: str | None = None
    image_id: str | None = None
    mount_lustre: bool = True

    @property
    def accelerators(self) -> int:
        return rules.accelerator_count(self.instance_type)

    @property
    def effective_deep_health_checks(self) -> list[DeepHealthCheck]:
        if self.deep_health_checks is not None:
            return list(self.deep_health_checks)
        if self.node_type is SlurmNodeType.COMPUTE and self.accelerators and self.image_id in (None, "default"):
            return [DeepHealthCheck.INSTANCE_STRESS, DeepHealthCheck.INSTANCE_CONNECTIVITY]
        return []


@dataclasses.dataclass(frozen=True)
class HyperPodSoftwareUpdates:
    """Scheduled rolling AMI updates of the compute groups, rolled back on alarm.

    :param schedule_expression: when updates run, e.g. ``cron(0 3 ? * SUN *)``. :default: required
    :param max_batch_percent: share of a group's instances updated at once. :default: 20
    :param wait: pause between batches (0 to 3600 s). :default: 5 minutes
    :param rollback_alarms: alarms that roll an update back (1 to 10). :default: required
    """

    schedule_expression: str
    rollback_alarms: Sequence[cloudwatch.IAlarm]
    max_batch_percent: int = 20
    wait: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.minutes(5))


@dataclasses.dataclass(frozen=True)
class HyperPodLifecycle:
    """Where the lifecycle scripts are. Use :meth:`bundled` (the default) or :meth:`from_bucket`.

    :param bucket: the bucket holding (or receiving) the scripts; the execution role is granted read on the
        prefix. :param prefix: key prefix ending with ``/``. :param on_init_complete: the entry script's file name,
        run after HyperPod has configured its own software (Slurm, FSx) on the node ("Extended" mode; the other
        mode, ``OnCreate``, leaves the whole Slurm setup to the scripts, which managed Slurm does not want).
    :param upload: upload the scripts shipped with mlinfra to ``bucket``/``prefix``.
    """

    bucket: s3.IBucket
    prefix: str
    on_init_complete: str = _ENTRY
    upload: bool = True

    @classmethod
    def bundled(cls, bucket: s3.IBucket, prefix: str = "hyperpod/lifecycle/") -> "HyperPodLifecycle":
        """mlinfra's scripts (mount the cache, enroot/pyxis, exporters), uploaded to ``bucket``/``prefix``."""
        return cls(bucket=bucket, prefix=prefix)

    @classmethod
    def from_bucket(cls, bucket: s3.IBucket, prefix: str, on_init_complete: str) -> "HyperPodLifecycle":
        """Scripts you maintain, already in ``bucket``/``prefix`` (read is granted to the execution role)."""
        return cls(bucket=bucket, prefix=prefix, on_init_complete=on_init_complete, upload=False)

    @property
    def source_s3_uri(self) -> str:
        return f"s3://{self.bucket.bucket_name}/{self.prefix}"


@jsii.implements(ec2.IConnectable)
class HyperPodCluster(Construct):
    """A SageMaker HyperPod cluster orchestrated by HyperPod's managed Slurm.

    :param vpc: the VPC. :default: required
    :param subnet: the ONE subnet of every node (the training subnet, the Lustre cache's). :default: required
    :param instance_groups: one controller group, at most one login group, one or more compute groups.
        :default: required
    :param lifecycle: where the lifecycle scripts are. :default: required
    :param cluster_name: the cluster's name (replacement on change). :default: generated from the path
    :param lustre: the cache mounted at ``lustre_mount_path`` on login and compute nodes (any ``ILustreCache``: a
        ``LustreCache`` or ``LustreCache.from_file_system_attributes``). :default: None
    :param lustre_mount_path: :default: /fsx
    :param lake: the data lake whose prefixes the nodes read (any ``IDataLake``). :default: None
    :param lake_read: lake prefixes the nodes read. :default: none
    :param lake_write: lake prefixes the jobs write (checkpoints, models). :default: none
    :param image_repositories: ECR repositories the jobs' containers pull from (enroot logs in with the node's
        role). :default: none (public images only)
    :param node_recovery: ``NodeRecovery.AUTOMATIC`` or ``NodeRecovery.NONE`` (or its value, ``"None"``).
        :default: NodeRecovery.AUTOMATIC
    :param software_updates: scheduled rolling AMI updates of the compute groups. :default: None
    :param exporter_images: images of the ``node`` and ``dcgm`` exporters. :default: DEFAULT_EXPORTER_IMAGES
    :param job_queue: an SQS queue and the Slurm job bridge on the controller, so state machines can run jobs
        (:func:`mlinfra.domain.hyperpod_jobs.training_task_state`, :meth:`grant_submit_jobs`). :default: True
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        subnet: ec2.ISubnet,
        instance_groups: Sequence[HyperPodInstanceGroup],
        lifecycle: HyperPodLifecycle,
        cluster_name: str | None = None,
        lustre: ILustreCache | None = None,
        lustre_mount_path: str = "/fsx",
        lake: IDataLake | None = None,
        lake_read: Sequence[HyperPodLakeAccess] = (),
        lake_write: Sequence[HyperPodLakeAccess] = (),
        image_repositories: Sequence[Any] = (),
        node_recovery: NodeRecovery | str = NodeRecovery.AUTOMATIC,
        software_updates: HyperPodSoftwareUpdates | None = None,
        exporter_images: dict[str, str] | None = None,
        job_queue: bool = True,
    ) -> None:
        super().__init__(scope, id)
        name = cluster_name or cdk.Names.unique_resource_name(self, max_length=63, separator="-")
        errors = _validate(self.node.path, name, instance_groups, lifecycle, lustre_mount_path, lake,
                           (*lake_read, *lake_write), node_recovery, software_updates)
        if errors:
            raise ValueError(f"{self.node.path}: HyperPodCluster is invalid:\n  - " + "\n  - ".join(errors))
        self.cluster_name = name
        self.instance_groups = tuple(instance_groups)
        self.lustre = lustre

        # --- network: all traffic within the group (EFA, NCCL, Slurm), HTTPS out, Lustre to the cache -------
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
            description="HyperPod nodes: all traffic within the group (EFA, Slurm), HTTPS out, Lustre to the cache",
        )
        sg = self.security_group
        sg.add_ingress_rule(sg, ec2.Port.all_traffic(), "EFA, NCCL and Slurm within the cluster")
        sg.add_egress_rule(sg, ec2.Port.all_traffic(), "EFA, NCCL and Slurm within the cluster")
        sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs (VPC endpoints, S3) and images")
        self.connections = ec2.Connections(security_groups=[sg])
        if lustre is not None:
            lustre.connections.allow_default_port_from(self, "Lustre from the HyperPod nodes")

        # --- the execution role of every group ---------------------------------------------------------
        self.role = iam.Role(
            self, "ExecutionRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="HyperPod nodes: lifecycle scripts, lake prefixes, logs, metrics, SSM sessions, ENIs",
        )
        self._grant_node_permissions(subnet)
        lifecycle.bucket.grant_read(self.role, f"{lifecycle.prefix}*")
        for access in lake_read:
            lake.grant_read(access.zone, self.role, access.prefix or None)
        for access in lake_write:
            lake.grant_write(access.zone, self.role, access.prefix or None)
        self.image_repositories = tuple(image_repositories)
        for repository in image_repositories:
            repository.grant_pull(self.role)
        acknowledge_wildcards(
            self.role,
            "Object access under the lifecycle prefix (read) and the lake prefixes given ('<prefix>*'), KMS use "
            "through S3 for those objects, HyperPod's log groups of this cluster, and APIs without resource-level "
            "permissions (ENI description, SSM session channels, metrics in HyperPod's namespace).",
            actions=(*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS),
            resources=("*", "*/*", f"*{lifecycle.prefix}*",
                       *(f"*{a.prefix}*" for a in (*lake_read, *lake_write) if a.prefix),
                       "*:log-group:/aws/sagemaker/Clusters/*", "*:network-interface/*"),
        )

        # --- the Slurm job bridge's queue: state machines hand jobs to the controller ---------------------
        self.job_queue: sqs.Queue | None = None
        if job_queue:
            dead_letters = sqs.Queue(self, "JobDeadLetters", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                     enforce_ssl=True, retention_period=cdk.Duration.days(14))
            for rule in ("AwsSolutions-SQS3", "cfn-guard::sqs_dlq_check"):
                acknowledge(dead_letters, rule, "This queue is the dead-letter queue of the job queue; "
                            "it has no dead-letter queue of its own.")
            self.job_queue = sqs.Queue(
                self, "JobQueue", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                # The bridge deletes a request once its job is submitted; a request it cannot take returns here.
                visibility_timeout=cdk.Duration.minutes(5),
                dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5, queue=dead_letters),
            )
            self.job_queue.grant_consume_messages(self.role)
            for queue in (self.job_queue, dead_letters):
                acknowledge(queue, "checkov::CKV_AWS_27", "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled); "
                            "checkov 3.3 recognizes only a KMS key (KmsMasterKeyId)")
            # Task-token callbacks have no resource-level permissions (the token identifies the task).
            self.role.add_to_principal_policy(iam.PolicyStatement(
                actions=["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"],
                resources=["*"]))

        # --- lifecycle scripts -----------------------------------------------------------------------------
        self.lifecycle = lifecycle
        self.lifecycle_deployment: s3deploy.BucketDeployment | None = None
        if lifecycle.upload:
            self.lifecycle_deployment = self._upload_lifecycle(lifecycle, lustre, lustre_mount_path,
                                                               exporter_images or DEFAULT_EXPORTER_IMAGES)

        # --- the cluster -----------------------------------------------------------------------------------
        self.cluster = sagemaker.CfnCluster(
            self, "Cluster",
            cluster_name=name,
            node_recovery=NodeRecovery(node_recovery).value,
            orchestrator=sagemaker.CfnCluster.OrchestratorProperty(
                slurm=sagemaker.CfnCluster.ClusterOrchestratorSlurmConfigProperty(slurm_config_strategy="Managed")),
            vpc_config=sagemaker.CfnCluster.VpcConfigProperty(security_group_ids=[sg.security_group_id],
                                                              subnets=[subnet.subnet_id]),
            instance_groups=[self._group(g, lifecycle, lustre, lustre_mount_path, software_updates)
                             for g in instance_groups],
        )
        # The role's policies and the scripts must exist before HyperPod starts the first node.
        self.cluster.node.add_dependency(self.role)
        if self.lifecycle_deployment is not None:
            self.cluster.node.add_dependency(self.lifecycle_deployment)

    # ------------------------------------------------------------------------------------------ handles

    @property
    def cluster_arn(self) -> str:
        return self.cluster.attr_cluster_arn

    def grant_submit_jobs(self, grantee: iam.IGrantable) -> iam.Grant:
        """Send job requests to the cluster's Slurm job bridge (a state machine's role)."""
        if self.job_queue is None:
            raise ValueError(f"{self.node.path}: grant_submit_jobs needs job_queue=True, got: job_queue=False")
        return self.job_queue.grant_send_messages(grantee)

    def grant_describe(self, grantee: iam.IGrantable) -> iam.Grant:
        """Describe the cluster and list its nodes (what a scheduler client or a pipeline watcher needs)."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:DescribeCluster", "sagemaker:ListClusterNodes",
                                      "sagemaker:DescribeClusterNode"],
            resource_arns=[self.cluster_arn])

    # ------------------------------------------------------------------------------------------ internals

    def _grant_node_permissions(self, subnet: ec2.ISubnet) -> None:
        stack = cdk.Stack.of(self)
        cluster_logs = stack.format_arn(service="logs", resource="log-group",
                                        resource_name=f"/aws/sagemaker/Clusters/{self.cluster_name}/*",
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        subnet_arn = stack.format_arn(service="ec2", resource="subnet", resource_name=subnet.subnet_id)
        eni_arns = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
        sg_arn = stack.format_arn(service="ec2", resource="security-group",
                                  resource_name=self.security_group.security_group_id)
        statements = [
            # HyperPod writes each node's lifecycle and Slurm logs to /aws/sagemaker/Clusters/<name>/<id>.
            iam.PolicyStatement(actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                                         "logs:DescribeLogStreams"], resources=[cluster_logs]),
            iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"],
                                conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Clusters"}}),
            # Session Manager access to the nodes (the documented way in; no SSH keys).
            iam.PolicyStatement(actions=["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                                         "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"],
                                resources=["*"]),
            # The nodes' interfaces in a customer VPC: the action list of the HyperPod guide ("IAM role for
            # SageMaker HyperPod", Amazon VPC permissions); creation only in the cluster's subnet and group.
            iam.PolicyStatement(actions=["ec2:CreateNetworkInterface"], resources=[subnet_arn, sg_arn, eni_arns]),
            iam.PolicyStatement(actions=["ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                                         "ec2:DeleteNetworkInterfacePermission", "ec2:DetachNetworkInterface",
                                         "ec2:CreateTags"], resources=[eni_arns]),
            iam.PolicyStatement(actions=["ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeSubnets",
                                         "ec2:DescribeSecurityGroups", "ec2:DescribeDhcpOptions"],
                                resources=["*"]),
        ]
        for statement in statements:
            self.role.add_to_principal_policy(statement)

    def _upload_lifecycle(self, lifecycle: HyperPodLifecycle, lustre: ILustreCache | None, mount_path: str,
                          exporters: dict[str, str]) -> s3deploy.BucketDeployment:
        config = {
            "cluster_name": self.cluster_name,
            "lustre": ({"dns_name": lustre.dns_name, "mount_name": lustre.mount_name, "mount_path": mount_path}
                       if lustre is not None else None),
            "groups": {g.name: {"node_type": g.node_type.value, "accelerators": g.accelerators,
                                                "mount_lustre": g.mount_lustre}
                       for g in self.instance_groups},
            "exporters": {"node": exporters.get("node", ""), "dcgm": exporters.get("dcgm", "")},
            "bridge": ({"queue_url": self.job_queue.queue_url, "region": cdk.Stack.of(self).region}
                       if self.job_queue is not None else None),
            "ecr_registries": sorted({f"{r.env.account}.dkr.ecr.{r.env.region}.amazonaws.com"
                                      for r in self.image_repositories}),
            "enroot_version": ENROOT_VERSION,
            "pyxis_version": PYXIS_VERSION,
        }
        deployment = s3deploy.BucketDeployment(
            self, "Lifecycle",
            sources=[
                s3deploy.Source.asset(str(scripts_dir()), exclude=["__init__.py", "__pycache__", "*.pyc"]),
                s3deploy.Source.json_data("lifecycle-config.json", config),
            ],
            destination_bucket=lifecycle.bucket,
            destination_key_prefix=lifecycle.prefix,
            prune=True,
            retain_on_delete=False,
            memory_limit=256,
        )
        _acknowledge_deployment(self, deployment)
        return deployment

    def _group(self, g: HyperPodInstanceGroup, lifecycle: HyperPodLifecycle, lustre: ILustreCache | None,
               mount_path: str, updates: HyperPodSoftwareUpdates | None) -> sagemaker.CfnCluster.ClusterInstanceGroupProperty:
        storage = []
        if lustre is not None and g.mount_lustre:
            storage.append(sagemaker.CfnCluster.ClusterInstanceStorageConfigProperty(
                fsx_lustre_config=sagemaker.CfnCluster.ClusterFsxLustreConfigProperty(
                    dns_name=lustre.dns_name, mount_name=lustre.mount_name, mount_path=mount_path)))
        if g.ebs_volume_size_gib:
            storage.append(sagemaker.CfnCluster.ClusterInstanceStorageConfigProperty(
                ebs_volume_config=sagemaker.CfnCluster.ClusterEbsVolumeConfigProperty(
                    volume_size_in_gb=g.ebs_volume_size_gib)))
        checks = g.effective_deep_health_checks
        scheduled = None
        if updates is not None and g.node_type is SlurmNodeType.COMPUTE:
            scheduled = sagemaker.CfnCluster.ScheduledUpdateConfigProperty(
                schedule_expression=updates.schedule_expression,
                deployment_config=sagemaker.CfnCluster.DeploymentConfigProperty(
                    auto_rollback_configuration=[sagemaker.CfnCluster.AlarmDetailsProperty(alarm_name=a.alarm_name)
                                                 for a in updates.rollback_alarms],
                    rolling_update_policy=sagemaker.CfnCluster.RollingUpdatePolicyProperty(
                        maximum_batch_size=sagemaker.CfnCluster.CapacitySizeConfigProperty(
                            type="CAPACITY_PERCENTAGE", value=updates.max_batch_percent)),
                    wait_interval_in_seconds=int(updates.wait.to_seconds()),
                ),
            )
        return sagemaker.CfnCluster.ClusterInstanceGroupProperty(
            instance_group_name=g.name,
            instance_type=g.instance_type,
            instance_count=g.instance_count,
            execution_role=self.role.role_arn,
            life_cycle_config=sagemaker.CfnCluster.ClusterLifeCycleConfigProperty(
                source_s3_uri=lifecycle.source_s3_uri, on_init_complete=lifecycle.on_init_complete),
            slurm_config=sagemaker.CfnCluster.ClusterSlurmConfigProperty(
                node_type=g.node_type.value, partition_names=[g.partition] if g.partition else None),
            on_start_deep_health_checks=[c.value for c in checks] or None,
            instance_storage_configs=storage or None,
            threads_per_core=g.threads_per_core,
            training_plan_arn=g.training_plan_arn,
            image_id=g.image_id,
            scheduled_update_config=scheduled,
        )


def _acknowledge_deployment(scope: Construct, deployment: s3deploy.BucketDeployment) -> None:
    """The BucketDeployment's singleton function (aws-cdk-lib's) is reviewed once here: it copies the scripts
    into the lifecycle prefix on deploy and nothing else."""
    stack = cdk.Stack.of(scope)
    handler = deployment.handler_role
    acknowledge_wildcards(
        handler, "aws-cdk-lib's BucketDeployment copies the lifecycle scripts from the CDK asset bucket to the "
        "lifecycle prefix: read on the assets, write on the destination, as CDK generates them.",
        actions=(*S3_GRANT_WILDCARD_ACTIONS, "s3:DeleteObject*", *KMS_WILDCARD_ACTIONS), resources=("*",  "*/*"))
    acknowledge(handler, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]", "aws-cdk-lib's BucketDeployment function uses the AWS managed "
                "AWSLambdaBasicExecutionRole for its own logs; it runs only during deployments.")
    for child in stack.node.find_all():
        if child.node.id.startswith("Custom::CDKBucketDeployment"):
            acknowledge(child, "AwsSolutions-L1", "aws-cdk-lib chooses the runtime of the BucketDeployment singleton "
                        "function; it is updated with aws-cdk-lib, not by this library.")
            for rule in ("cfn-guard::lambda_inside_vpc_check", "checkov::CKV_AWS_115", "checkov::CKV_AWS_116",
                         "checkov::CKV_AWS_117", "checkov::CKV_AWS_173"):
                acknowledge(child, rule, "aws-cdk-lib's BucketDeployment singleton runs once per deployment to copy "
                            "the lifecycle scripts (S3 API only, no secrets in its environment); its shape is "
                            "aws-cdk-lib's")


# --------------------------------------------------------------------------------------------------
# Validation: every rule from mlinfra.domain.hyperpod, all errors at once
# --------------------------------------------------------------------------------------------------


def _between(prop: str, value: Any, low: float, high: float, unit: str = "") -> list[str]:
    """:func:`check_between` as a collected error (HyperPod reports every problem at once)."""
    try:
        check_between(prop, value, low, high, unit)
    except ValueError as exc:
        return [str(exc)]
    return []


def _validate(path: str, name: str, groups: Sequence[HyperPodInstanceGroup], lifecycle: HyperPodLifecycle,
              mount_path: str, lake: IDataLake | None, lake_read: Sequence[HyperPodLakeAccess], node_recovery: NodeRecovery | str,
              updates: HyperPodSoftwareUpdates | None) -> list[str]:
    errors: list[str] = []
    if not is_token(name):
        errors += rules.name_errors("cluster_name", name)
    if not 1 <= len(groups) <= rules.MAX_INSTANCE_GROUPS:
        errors.append(f"instance_groups must hold 1 to {rules.MAX_INSTANCE_GROUPS} groups, got: {len(groups)}")
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        errors.append(f"instance_groups names must be unique, got: {names}")
    for g in groups:
        p = f"instance_groups[{g.name}]"
        if not isinstance(g.node_type, SlurmNodeType):
            errors.append(f"{p}.node_type must be a SlurmNodeType ({[t.name for t in SlurmNodeType]}), got: "
                          f"{g.node_type!r}")
            continue
        errors += rules.name_errors(f"{p}.name", g.name)
        errors += rules.instance_type_errors(f"{p}.instance_type", g.instance_type)
        minimum = 0 if g.node_type is SlurmNodeType.COMPUTE else 1
        if not is_token(g.instance_count):
            errors += rules.instance_count_errors(f"{p}.instance_count", g.instance_count, minimum)
        for check in g.deep_health_checks or ():
            if not isinstance(check, DeepHealthCheck):
                errors.append(f"{p}.deep_health_checks takes DeepHealthCheck members, got: {check!r}")
        if all(isinstance(c, DeepHealthCheck) for c in g.deep_health_checks or ()):
            errors += rules.deep_health_check_errors(f"{p}.deep_health_checks", g.instance_type,
                                                     g.effective_deep_health_checks, g.image_id)
        if g.threads_per_core not in (None, 1, 2) and not is_token(g.threads_per_core):
            errors.append(f"{p}.threads_per_core must be 1 or 2, got: {g.threads_per_core!r}")
        errors += _between(f"{p}.ebs_volume_size_gib", g.ebs_volume_size_gib, 1, 16384)
    if all(isinstance(g.node_type, SlurmNodeType) for g in groups):
        errors += rules.slurm_topology_errors(
            "instance_groups", [(g.name, g.node_type, g.instance_count, g.partition) for g in groups])
    if not lifecycle.prefix.endswith("/") or lifecycle.prefix.startswith("/"):
        errors.append(f"lifecycle.prefix must be a key prefix ending with '/', got: {lifecycle.prefix!r}")
    else:
        try:
            validate_prefix(lifecycle.prefix, "lifecycle.prefix")
        except ValueError as exc:
            errors.append(str(exc))
    bucket_name = lifecycle.bucket.bucket_name
    if not is_token(bucket_name):
        # A bucket object is always granted explicitly; the rule matters for names only when it is literal.
        errors += rules.lifecycle_uri_errors("lifecycle", f"s3://{bucket_name}/{lifecycle.prefix}", explicit_grant=True)
    if not mount_path.startswith("/") or mount_path == "/":
        errors.append(f"lustre_mount_path must be an absolute path below '/', got: {mount_path!r}")
    if lake_read and lake is None:
        errors.append(f"lake_read needs lake, got: {len(lake_read)} prefixes and no lake")
    for access in lake_read:
        try:
            validate_prefix(access.prefix or None, "lake_read prefix")
        except ValueError as exc:
            errors.append(str(exc))
    try:
        choice(NodeRecovery, node_recovery, "node_recovery")
    except ValueError as exc:
        errors.append(str(exc))
    if updates is not None:
        if not 1 <= len(updates.rollback_alarms) <= 10:
            errors.append(f"software_updates.rollback_alarms must hold 1 to 10 alarms, got: {len(updates.rollback_alarms)}")
        errors += _between("software_updates.max_batch_percent", updates.max_batch_percent, 1, 100)
        errors += _between("software_updates.wait", updates.wait, 0, 3600, "seconds")
        if not (updates.schedule_expression.startswith("cron(") and updates.schedule_expression.endswith(")")):
            errors.append("software_updates.schedule_expression must be a cron(...) expression, got: "
                          f"{updates.schedule_expression!r}")
    return errors

