"""TrainingStack: the Lustre cache linked to the lake, an AWS Batch GPU cluster, a Slurm (ParallelCluster)
GPU cluster and a SageMaker HyperPod cluster, all in the network's single-AZ training subnet.

The file system is RETAINED (stateful); the clusters are compute and go with the stack. SageMaker training jobs
have no CloudFormation resource: :meth:`TrainingStack.training_job_spec` gives the retrain pipeline a
:class:`~mlinfra.constructs.training_job.TrainingJobSpec` already placed in the training subnet, with a security
group that reaches the cache.
"""

from __future__ import annotations

import re
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from mlinfra.config import PlatformConfig, parse_lake_target
from mlinfra.constructs.data_lake import IDataLake
from mlinfra.constructs.hyperpod import (
    HyperPodCluster,
    HyperPodInstanceGroup,
    HyperPodLakeAccess,
    HyperPodLifecycle,
    SlurmNodeType,
)
from mlinfra.constructs.lustre_cache import LustreCache, LustreDeploymentType, LustreLink
from mlinfra.constructs.network import Network
from mlinfra.constructs.training_cluster import (
    BatchTrainingCluster,
    CapacityType,
    LakeAccess,
    ParallelClusterProvider,
    QueueUpdateStrategy,
    SlurmComputeResource,
    SlurmQueue,
    SlurmTrainingCluster,
)
from mlinfra.constructs.training_job import TrainingJobSpec
from mlinfra.domain.lustre_sizing import plan_cache
from mlinfra.stacks.base import PlatformStack


class TrainingStack(PlatformStack):
    """GPU training: cache, Batch cluster, Slurm cluster, SageMaker job placement.

    :param network: the platform network (its training subnet hosts everything here).
    :param lake: the data lake (any :class:`~mlinfra.constructs.data_lake.IDataLake`).
    """

    def __init__(self, scope: Construct, *, config: PlatformConfig, network: Network, lake: IDataLake) -> None:
        super().__init__(scope, "training", config=config,
                         description="FSx for Lustre cache and GPU training clusters (AWS Batch, Slurm)")
        cfg = config.training
        vpc, subnet = network.vpc, network.training_subnet

        # --- the cache (``training.cache_enabled``: without it the clusters and jobs read the lake) -----
        self.cache: LustreCache | None = None
        self.cache_plan = None
        if cfg.cache_enabled:
            links = []
            for path, target in cfg.cache_links.items():
                zone, prefix = parse_lake_target(target)
                links.append(LustreLink(file_system_path=path, bucket=lake.bucket(zone), prefix=prefix))
            if cfg.cache_storage_capacity_gib is None:
                self.cache_plan = plan_cache(cfg.sizing_gpus, cfg.sizing_per_gpu_read_mbps, cfg.sizing_dataset_gib,
                                             deployment_types=(cfg.cache_deployment_type,))
                sizing: dict[str, Any] = {"plan": self.cache_plan}
            else:
                self.cache_plan = None
                sizing = {"deployment_type": LustreDeploymentType(cfg.cache_deployment_type),
                          "storage_capacity_gib": cfg.cache_storage_capacity_gib,
                          "per_unit_storage_throughput": cfg.cache_per_unit_throughput}
            self.cache = LustreCache(
                self, "Cache", vpc=vpc, subnet=subnet, links=links,
                destroy_data_on_delete=config.destroy_data_on_delete, **sizing,
            )

        read = [LakeAccess(*parse_lake_target(t)) for t in cfg.lake_read]
        write = [LakeAccess(*parse_lake_target(t)) for t in cfg.lake_write]
        image = ec2.MachineImage.generic_linux({config.region: cfg.ami_id}) if cfg.ami_id else \
            ec2.MachineImage.from_ssm_parameter(cfg.ami_ssm_parameter)

        # --- AWS Batch ------------------------------------------------------------------------------
        self.batch_cluster: BatchTrainingCluster | None = None
        if cfg.batch_enabled:
            self.batch_cluster = BatchTrainingCluster(
                self, "BatchCluster", vpc=vpc, subnet=subnet,
                lustre=self.cache, lake=lake, instance_read=read, efa=cfg.efa, machine_image=image,
                image=cfg.batch_image, instance_types=tuple(cfg.batch_instance_types),
                nodes=cfg.batch_nodes, max_vcpus=cfg.batch_max_vcpus, job_read=read, job_write=write,
            )
            cdk.CfnOutput(self, "BatchJobQueueArn", value=self.batch_cluster.job_queue.ref)
            cdk.CfnOutput(self, "BatchJobDefinitionArn", value=self.batch_cluster.job_definition.job_definition_arn)

        # --- Slurm (AWS ParallelCluster) ------------------------------------------------------------
        self.slurm_cluster: SlurmTrainingCluster | None = None
        if cfg.slurm_enabled:
            token = cfg.slurm_service_token or ""
            self.pcluster_provider: ParallelClusterProvider | None = None
            if token == "provider":
                self.pcluster_provider = ParallelClusterProvider(
                    self, "ParallelClusterProvider", version=cfg.slurm_provider_version)
                token = self.pcluster_provider.service_token
            elif token.startswith("ssm:"):
                token = ssm.StringParameter.value_for_string_parameter(self, token[len("ssm:"):])
            queues = [
                SlurmQueue(name=q.name, capacity_type=CapacityType(q.capacity_type), compute_resources=[SlurmComputeResource(
                    name=_resource_name(q.instance_type), instance_type=q.instance_type,
                    min_count=q.min_count, max_count=q.max_count, efa=cfg.efa,
                    capacity_reservation_id=q.capacity_reservation_id)])
                for q in cfg.slurm_queues
            ]
            self.slurm_cluster = SlurmTrainingCluster(
                self, "SlurmCluster", vpc=vpc, subnet=subnet,
                lustre=self.cache, lake=lake, instance_read=read, efa=cfg.efa,
                service_token=token, cluster_name=config.resource_name(cfg.slurm_cluster_name), queues=queues,
                head_node_instance_type=cfg.slurm_head_node_instance_type,
                queue_update_strategy=QueueUpdateStrategy(cfg.slurm_queue_update_strategy),
            )
            cdk.CfnOutput(self, "SlurmClusterName", value=config.resource_name(cfg.slurm_cluster_name))

        # --- SageMaker HyperPod (managed Slurm), mounting the same cache --------------------------------
        self.hyperpod_cluster: HyperPodCluster | None = None
        hp = cfg.hyperpod
        if hp.enabled:
            self.hyperpod_cluster = HyperPodCluster(
                self, "HyperPod", vpc=vpc, subnet=subnet, cluster_name=config.resource_name(hp.cluster_name),
                instance_groups=[HyperPodInstanceGroup(name=g.name, instance_type=g.instance_type,
                                                       node_type=SlurmNodeType(g.node_type),
                                                       instance_count=g.instance_count, partition=g.partition)
                                 for g in hp.groups],
                lifecycle=HyperPodLifecycle.bundled(lake.bucket("artifacts"), hp.lifecycle_prefix),
                lustre=self.cache, lake=lake,
                lake_read=[HyperPodLakeAccess(*parse_lake_target(t)) for t in cfg.lake_read],
                lake_write=[HyperPodLakeAccess(*parse_lake_target(t)) for t in cfg.lake_write],
                node_recovery=hp.node_recovery,
            )
            cdk.CfnOutput(self, "HyperPodClusterName", value=self.hyperpod_cluster.cluster_name)
            cdk.CfnOutput(self, "HyperPodClusterArn", value=self.hyperpod_cluster.cluster_arn)
            cdk.CfnOutput(self, "HyperPodJobQueueUrl", value=self.hyperpod_cluster.job_queue.queue_url)

        # --- SageMaker training jobs: placement in the training subnet --------------------------------
        self.sagemaker_security_group = ec2.SecurityGroup(
            self, "SageMakerJobSecurityGroup", vpc=vpc, allow_all_outbound=False,
            description="SageMaker training jobs: traffic between the instances of a job, HTTPS out, Lustre",
        )
        sg = self.sagemaker_security_group
        sg.add_ingress_rule(sg, ec2.Port.all_traffic(), "Distributed training between instances of a job")
        sg.add_egress_rule(sg, ec2.Port.all_traffic(), "Distributed training between instances of a job")
        sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs and ECR")
        self._subnet = subnet

        if self.cache is not None:
            self.cache.connections.allow_default_port_from(sg, "Lustre from SageMaker training jobs")
            cdk.CfnOutput(self, "LustreFileSystemId", value=self.cache.file_system_id)
            cdk.CfnOutput(self, "LustreDnsName", value=self.cache.dns_name)
            cdk.CfnOutput(self, "LustreMountName", value=self.cache.mount_name)
            cdk.CfnOutput(self, "LustreMountCommand", value=self.cache.mount_command())
        cdk.CfnOutput(self, "SageMakerJobSecurityGroupId", value=sg.security_group_id)

    def training_job_spec(self, *, image_uri: str, role_arn: str, output_s3_uri: str, **kwargs: Any) -> TrainingJobSpec:
        """A :class:`TrainingJobSpec` placed in the training subnet with the job security group (FSx channels of
        the cache then work); other :class:`TrainingJobSpec` fields pass through ``kwargs``."""
        kwargs.setdefault("subnet_ids", [self._subnet.subnet_id])
        kwargs.setdefault("security_group_ids", [self.sagemaker_security_group.security_group_id])
        return TrainingJobSpec(image_uri=image_uri, role_arn=role_arn, output_s3_uri=output_s3_uri, **kwargs)


def _resource_name(instance_type: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", instance_type.lower())[:25]
