"""The service-rules table: every AWS rule an mlinfra construct relies on, as data with its source.

A rule here is something the service itself enforces or does (an API that refuses a combination, a validator that
rejects a configuration, a behaviour a design depends on), found in AWS documentation or in a validator AWS
publishes. Each row names the code that enforces it (``enforced_by``, a dotted path that must import) so a test can
check that every rule has a guard, and every guard raises a message that cites the rule id.

Add rows in the section of the service (one section per service keeps parallel changes apart). Keep ``id`` stable:
messages and tests cite it.
"""

from __future__ import annotations

import dataclasses

__all__ = ["ServiceRule", "RULES", "rule", "cite"]


@dataclasses.dataclass(frozen=True)
class ServiceRule:
    #: Stable id, ``<service>.<short-name>``, cited in error messages.
    id: str
    #: The rule in one sentence, as the service states it.
    rule: str
    #: Where AWS says so: a documentation URL (and section) or the validator's name.
    source: str
    #: Dotted path of the function or class that enforces the rule in mlinfra (must import).
    enforced_by: str

    @property
    def service(self) -> str:
        return self.id.split(".", 1)[0]


# --- SageMaker (training, processing, transform, hosting) ------------------------------------------------------
_SAGEMAKER: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="sagemaker.no-volume-kms-with-instance-storage",
        rule="KmsKeyId (endpoint config) / VolumeKmsKeyId (jobs) must not be set for instance types with local NVMe "
        "instance storage; those volumes are encrypted by the instance's hardware module.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariant.html and "
        "API_ResourceConfig.html (VolumeKmsKeyId)",
        enforced_by="mlinfra.domain.hosting_instances.accepts_volume_kms_key",
    ),
    ServiceRule(
        id="sagemaker.inference-image-serves",
        rule="A hosted model's image must implement the serving contract (GET /ping, POST /invocations on 8080); "
        "training images (the *-training Deep Learning Containers) do not.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html",
        enforced_by="mlinfra.constructs.retrain_pipeline._validate_inference_image",
    ),
    ServiceRule(
        id="sagemaker.model-role-reads-artifact-and-image",
        rule="The model's execution role downloads ModelDataUrl (kms:Decrypt on the artifact's key) and pulls the "
        "image (ECR pull actions and ecr:GetAuthorizationToken).",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html (CreateModel API: execution role permissions)",
        enforced_by="mlinfra.constructs.retrain_pipeline.RetrainPipeline._grant_model_role",
    ),
    ServiceRule(
        id="sagemaker.endpoint-stack-update-guarded",
        rule="AWS::SageMaker::Endpoint applies DeploymentConfig (blue/green, auto-rollback) to stack updates and keeps "
        "the current instance count and weights with RetainAllVariantProperties; without them an update is "
        "all at once and resets capacity to InitialInstanceCount.",
        source="https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sagemaker-endpoint.html",
        enforced_by="mlinfra.constructs.endpoint.rollout._RolloutMixin._guard_stack_updates",
    ),
    ServiceRule(
        id="sagemaker.scaled-variant-type-change",
        rule="UpdateEndpoint fails when it changes the instance type of, or removes, a production variant registered "
        "as an Application Auto Scaling target: deregister the target first, update, then register it again "
        "(DeregisterScalableTarget also deletes its scaling policies and scheduled actions). CloudFormation deletes "
        "removed resources only in its cleanup phase, so a stack update needs the deregistration ordered before the "
        "endpoint and the registration after it.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html (Update endpoints that use "
        "auto scaling); https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DeregisterScalableTarget.html",
        enforced_by="mlinfra.constructs.endpoint.scaling._ScalingMixin._scaling_guard",
    ),
    ServiceRule(
        id="cloudformation.primary-identifier-unique",
        rule="CloudFormation refuses to create a resource whose primary identifier is already held by another resource "
        "of the stack ('... already exists in stack'); during an update every old resource still exists until cleanup. "
        "An AWS::ApplicationAutoScaling::ScalableTarget is identified by ResourceId|ScalableDimension|ServiceNamespace, "
        "so a variant's target keeps one logical id for life.",
        source="AWS CloudFormation resource schema AWS::ApplicationAutoScaling::ScalableTarget (primaryIdentifier, as "
        "shipped in cfn-lint); https://docs.aws.amazon.com/cloudformation-cli/latest/userguide/resource-type-schema.html "
        "(primaryIdentifier); https://github.com/sbstjn/serverless-dynamodb-autoscaling/issues/16",
        enforced_by="mlinfra.constructs.endpoint.scaling._ScalingMixin._scaling",
    ),
    ServiceRule(
        id="sagemaker.update-endpoint-in-service",
        rule="UpdateEndpoint is refused while the endpoint is Creating, Updating, SystemUpdating or RollingBack; a "
        "missing endpoint is reported as a ValidationException 'Could not find endpoint'.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html",
        enforced_by="mlinfra.retrain_definition.build_definition",
    ),
    ServiceRule(
        id="sagemaker.rollout-fits-guardrails",
        rule="A blue/green update's bake waits (WaitIntervalInSeconds per traffic step) and TerminationWaitInSeconds "
        "run within MaximumExecutionTimeoutInSeconds; auto-rollback only acts on alarms that go to ALARM during the "
        "update, so an alarm needing more datapoints than a bake holds never rolls back.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green.html and "
        "deployment-guardrails-configuration.html (auto-rollback alarms)",
        enforced_by="mlinfra.constructs.endpoint.validation._validate_rollout_timing",
    ),
    ServiceRule(
        id="sagemaker.gpu-metrics-summed-over-devices",
        rule="Endpoint instance metrics GPUUtilization and GPUMemoryUtilization (and CPUUtilization) are summed over "
        "the instance's devices: 0-400 % on a 4-GPU instance.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html (SageMaker AI endpoint "
        "instance metrics)",
        enforced_by="mlinfra.constructs.endpoint.alarms._AlarmsMixin._gpus",
    ),
    ServiceRule(
        id="sagemaker.auto-rollback-describe-alarms",
        rule="An UpdateEndpoint with AutoRollbackConfiguration needs cloudwatch:DescribeAlarms on the alarms.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html",
        enforced_by="mlinfra.constructs.retrain_pipeline.RetrainPipeline._grant_state_machine",
    ),
    ServiceRule(
        id="sagemaker.customer-metadata",
        rule="A model package's CustomerMetadataProperties hold at most 50 entries; keys are 1-128 and values 1-256 "
        "characters of letters, separators, numbers and _.:/=+-@ (no JSON braces or quotes).",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html "
        "(CustomerMetadataProperties) and botocore's sagemaker model (the same bounds and pattern; tests run it)",
        enforced_by="mlinfra.lambdas.pipeline_gate.handler.customer_metadata",
    ),
    ServiceRule(
        id="sagemaker.hyperparameters",
        rule="CreateTrainingJob accepts at most 100 hyperparameters, keys up to 256 and values up to 2500 characters.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html "
        "(HyperParameters: maximum of 100 items) and botocore's sagemaker model",
        enforced_by="mlinfra.lambdas.pipeline_validate.handler.validate_input",
    ),
    # Batch transform (issue 12 item 11): newest approved model at run time, one job per ready batch.
    ServiceRule(
        id="sagemaker.batch-transform-payload",
        rule="A transform job's MaxPayloadInMB is 0-100 and MaxConcurrentTransforms x MaxPayloadInMB must not exceed "
        "100 MB.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html "
        "(MaxPayloadInMB, MaxConcurrentTransforms)",
        enforced_by="mlinfra.constructs.batch_transform.validation.validate_props",
    ),
    ServiceRule(
        id="sagemaker.transform-job-name-unique",
        rule="A transform job's name must be unique within a Region of an account, for good: a second "
        "CreateTransformJob with the name fails (ResourceInUse in the service model) and starts nothing.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html "
        "(TransformJobName) and botocore's sagemaker model (CreateTransformJob errors)",
        enforced_by="mlinfra.constructs.batch_transform.BatchTransform",
    ),
    ServiceRule(
        id="sagemaker.model-from-package-version",
        rule="CreateModel builds a model from a registered model version when the container names its ARN in "
        "ModelPackageName (image, artifact and environment come from the version).",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-create-model.html (using Model "
        "Registry) and https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ContainerDefinition.html",
        enforced_by="mlinfra.constructs.batch_transform.BatchTransform",
    ),
    ServiceRule(
        id="sagemaker.list-model-packages-resource",
        rule="sagemaker:ListModelPackages supports no resource-level permissions: a policy allowing it names Resource "
        "'*'; DescribeModelPackage is scoped to model-package/<group>/<version>.",
        source="https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html",
        enforced_by="mlinfra.constructs.batch_transform.BatchTransform",
    ),
    ServiceRule(
        id="sagemaker.list-model-packages-empty-page",
        rule="ListModelPackages with a filter (ModelApprovalStatus) may answer an empty page together with a "
        "NextToken: a caller pages on while the list is empty and the token present; only an empty page without a "
        "token means no match.",
        source="https://github.com/boto/boto3/issues/2521 and the SageMaker Python SDK, which loops while the list "
        "is empty (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ListModelPackages.html: NextToken)",
        enforced_by="mlinfra.constructs.batch_transform.BatchTransform",
    ),
    ServiceRule(
        id="s3.eventbridge-object-created",
        rule="S3 sends EventBridge 'Object Created' events with detail.bucket.name, detail.object.key, "
        "detail.object.etag (lowercase), detail.object.version-id (versioned buckets only) and detail.object.sequencer "
        "(differs per write of a key), delivered at least once; a rule's prefix filter on the key selects markers. "
        "The ETag is no write id (identical bytes give the same ETag under SSE-S3).",
        source="https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html (EventBridge event message "
        "structure) and https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-content-based-filtering.html",
        enforced_by="mlinfra.constructs.batch_transform.BatchTransform",
    ),
)


# --- Step Functions ------------------------------------------------------------------------------------------------
_STEPFUNCTIONS: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="stepfunctions.history-event-limit",
        rule="A Standard execution stops at 25,000 history events; that end runs no Catch. A Task with a "
        "Choice/Wait poll loop costs about 13 events per iteration.",
        source="https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html (execution history)",
        enforced_by="mlinfra.retrain_definition.worst_case_history_events",
    ),
    ServiceRule(
        id="stepfunctions.sagemaker-sync-iam",
        rule="The optimized sagemaker:create*Job.sync integrations need events:PutTargets, PutRule and DescribeRule "
        "on rule/StepFunctionsGetEventsForSageMaker*JobsRule and the matching sagemaker:Stop*Job.",
        source="https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html",
        enforced_by="mlinfra.constructs.retrain_pipeline.RetrainPipeline._grant_state_machine",
    ),
)


# --- AWS Batch -----------------------------------------------------------------------------------------------------
_BATCH: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="batch.mnp-no-spot",
        rule="Multi-node parallel jobs are not supported on compute environments that use Spot Instances.",
        source="https://docs.aws.amazon.com/batch/latest/userguide/mnp-ce.html",
        enforced_by="mlinfra.constructs.training_cluster.BatchTrainingCluster",
    ),
    ServiceRule(
        id="batch.mnp-ecs-agent-image",
        rule="Multi-node parallel jobs run on ECS container instances: the node image needs the ECS agent "
        "(ecs-init); the Deep Learning Base AMI has none, the ECS GPU-optimized AL2023 image has it but neither the "
        "EFA software nor the Lustre client (installed by the node bootstrap).",
        source="https://docs.aws.amazon.com/batch/latest/userguide/compute_resource_AMIs.html (AMI specification) "
        "and https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-optimized_AMI.html",
        enforced_by="mlinfra.constructs.training_cluster.BatchTrainingCluster",
    ),
    ServiceRule(
        id="batch.mnp-task-eni-security-groups",
        rule="Multi-node parallel containers use the awsvpc network mode: each task ENI takes the compute "
        "environment's security groups, or the VPC's default group when the environment lists none (as with EFA "
        "launch-template interfaces).",
        source="https://docs.aws.amazon.com/batch/latest/userguide/mnp-ce.html",
        enforced_by="mlinfra.constructs.training_cluster.BatchTrainingCluster",
    ),
    ServiceRule(
        id="batch.execution-role-pulls-image",
        rule="The job execution role pulls the container image: it needs ecr:GetAuthorizationToken and the pull "
        "actions on the image's repository.",
        source="https://docs.aws.amazon.com/batch/latest/userguide/execution-IAM-role.html",
        enforced_by="mlinfra.constructs.training_cluster.image_repository",
    ),
    ServiceRule(
        id="batch.infrastructure-updates",
        rule="Infrastructure updates of a compute environment (new AMI, new launch-template version) need the "
        "service-linked role AWSServiceRoleForBatch and an explicit launch-template version that changes.",
        source="https://docs.aws.amazon.com/batch/latest/userguide/updating-compute-environments.html and "
        "infrastructure-updates.html",
        enforced_by="mlinfra.constructs.training_cluster.BatchTrainingCluster",
    ),
    ServiceRule(
        id="batch.job-state-time-limit",
        rule="jobStateTimeLimitActions cancel a job RUNNABLE longer than maxTimeSeconds (600 to 86400) for one of "
        "the blocked reasons (CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY, MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_"
        "RESOURCE, MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT); only CANCEL on ECS queues.",
        source="https://docs.aws.amazon.com/batch/latest/userguide/job_stuck_in_runnable_time_limit_actions.html",
        enforced_by="mlinfra.constructs.training_cluster.BatchTrainingCluster",
    ),
    ServiceRule(
        id="batch.efa-no-forced-device-rdma",
        rule="libfabric aborts when FI_EFA_USE_DEVICE_RDMA=1 is set on an EFA device without RDMA; unset, RDMA is "
        "used where the device has it.",
        source="AWS EFA docs https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-start-nccl.html and the "
        "libfabric fi_efa(7) man page (FI_EFA_USE_DEVICE_RDMA)",
        enforced_by="mlinfra.constructs.training_cluster.efa_environment",
    ),
)


# --- AWS ParallelCluster -------------------------------------------------------------------------------------------
_PARALLELCLUSTER: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="parallelcluster.cluster-name-not-a-stack-name",
        rule="A cluster is created as a CloudFormation stack named after the cluster: its name must differ from "
        "every stack name of the account and region (the app's stacks included).",
        source="https://docs.aws.amazon.com/parallelcluster/latest/ug/cloudformation-v3.html and "
        "ClusterNameValidator (aws-parallelcluster)",
        enforced_by="mlinfra.constructs.training_cluster.cluster_name_errors",
    ),
    ServiceRule(
        id="parallelcluster.fsx-networking",
        rule="The file system's security groups must allow inbound AND outbound TCP 988 to and from the cluster "
        "nodes.",
        source="ExistingFsxNetworkingValidator (aws-parallelcluster 3.16.1, pcluster/validators/fsx_validators.py)",
        enforced_by="mlinfra.constructs.lustre_cache.LustreConnections",
    ),
    ServiceRule(
        id="parallelcluster.provider-policy-path",
        rule="The hosted provider's default Lambda role attaches only IAM policies named or pathed "
        "parallelcluster*; other additional policies need a custom provider role allowed to attach them.",
        source="https://docs.aws.amazon.com/parallelcluster/latest/ug/cloudformation-v3.html (custom resource "
        "provider permissions) and the provider template cluster.yaml (iam:AttachRolePolicy condition)",
        enforced_by="mlinfra.constructs.training_cluster.GpuTrainingClusterBase",
    ),
    ServiceRule(
        id="parallelcluster.capacity-block",
        rule="CAPACITY_BLOCK queues need a capacity reservation id on each compute resource, MinCount = MaxCount "
        "> 0, and no placement group.",
        source="https://docs.aws.amazon.com/parallelcluster/latest/ug/launch-instances-capacity-blocks.html and "
        "the capacity-block validators of aws-parallelcluster 3.16.1",
        enforced_by="mlinfra.constructs.training_cluster.capacity_block_errors",
    ),
    ServiceRule(
        id="parallelcluster.queue-update-strategy",
        rule="A stack update that changes queues needs Scheduling.SlurmSettings.QueueUpdateStrategy (DRAIN, "
        "TERMINATE or COMPUTE_FLEET_STOP); the CloudFormation provider does not stop the fleet for it.",
        source="https://docs.aws.amazon.com/parallelcluster/latest/ug/Scheduling-v3.html#yaml-Scheduling-"
        "SlurmSettings-QueueUpdateStrategy",
        enforced_by="mlinfra.constructs.training_cluster.SlurmTrainingCluster",
    ),
)


# --- FSx for Lustre ------------------------------------------------------------------------------------------------
_FSX: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="fsx.no-backups-with-s3-links",
        rule="Backups (automatic or user-initiated) are only for file systems not linked to an S3 data repository, "
        "and CopyTagsToBackups is not available with a data repository.",
        source="https://docs.aws.amazon.com/fsx/latest/LustreGuide/using-backups-fsx.html",
        enforced_by="mlinfra.constructs.lustre_cache.backup_errors",
    ),
    ServiceRule(
        id="fsx.lustre-ports-both-ways",
        rule="Without all-outbound rules, the file system's group needs inbound and outbound TCP 988 and 1018-1023 "
        "to its clients and to itself.",
        source="https://docs.aws.amazon.com/fsx/latest/LustreGuide/limit-access-security-groups.html",
        enforced_by="mlinfra.constructs.lustre_cache.LustreConnections",
    ),
    ServiceRule(
        id="fsx.file-system-attributes",
        rule="A file system id is fs- and 8 or more hex digits (11 to 21 characters), its DNS name is the id "
        "followed by the FSx domain (fs-<id>.fsx.<region>.amazonaws.com), and a Lustre mount name is 1 to 8 "
        "letters, digits, '_' or '-'.",
        source="https://docs.aws.amazon.com/fsx/latest/APIReference/API_FileSystem.html (FileSystemId, DNSName) and "
        "API_LustreFileSystemConfiguration.html (MountName); botocore's fsx model carries the same patterns",
        enforced_by="mlinfra.constructs.lustre_cache.attribute_errors",
    ),
)


# --- EC2 (instances, EFA, placement, IMDS) -------------------------------------------------------------------------
_EC2: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="ec2.imds-hop-limit-containers",
        rule="With an IMDSv2 hop limit of 1, containers behind a bridge or their own ENI cannot reach the instance "
        "metadata (and so the instance role); 2 lets them. Containers with their own role get 1.",
        source="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-IMDS-existing-instances.html and "
        "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/security-iam-roles.html",
        enforced_by="mlinfra.constructs.training_cluster.BatchTrainingCluster",
    ),
    ServiceRule(
        id="ec2.efa-interface-count",
        rule="An instance takes at most its type's MaximumEfaInterfaces EFA interfaces, one per network card; a "
        "healthy node shows that many EFA devices.",
        source="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-acc-inst-types.html (DescribeInstanceTypes "
        "NetworkInfo.EfaInfo)",
        enforced_by="mlinfra.domain.instances.efa_interface_layout",
    ),
    ServiceRule(
        id="ec2.instance-store",
        rule="Types with local NVMe instance storage (InstanceStorageInfo.TotalSizeInGB > 0) encrypt it with a "
        "hardware key on the instance; services refuse a customer volume key for them.",
        source="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/InstanceStorage.html and DescribeInstanceTypes "
        "(InstanceStorageInfo)",
        enforced_by="mlinfra.domain.instances.has_instance_store",
    ),
)


# --- IAM, KMS, SQS, SNS, Service Catalog (isolation and confused deputy) -------------------------------------------
_IAM: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="iam.launch-constraint-per-portfolio-product",
        rule="A Service Catalog launch constraint applies to one product in one portfolio (one launch role per "
        "product-portfolio pair), so per-team launch roles need per-team portfolios.",
        source="https://docs.aws.amazon.com/servicecatalog/latest/adminguide/constraints-launch.html",
        enforced_by="mlinfra.constructs.team_environment.TeamPortfolio",
    ),
    ServiceRule(
        id="iam.launch-role-reads-tagged-templates",
        rule="A launch role reads the product templates Service Catalog stores with s3:GetObject, which can be limited "
        "to objects tagged servicecatalog:provisioning=true (s3:ExistingObjectTag); provisioned products run as "
        "CloudFormation stacks named SC-<account>-pp-<id>.",
        source="https://docs.aws.amazon.com/servicecatalog/latest/adminguide/constraints-launch.html",
        enforced_by="mlinfra.constructs.team_environment.TeamPortfolio",
    ),
    ServiceRule(
        id="iam.sagemaker-project-template",
        rule="A custom SageMaker project template is a Service Catalog product tagged sagemaker:studio-visibility=true, "
        "with the SageMakerProjectName and SageMakerProjectId parameters, in a portfolio shared with the Studio users' "
        "execution roles.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-projects-templates-custom.html",
        enforced_by="mlinfra.constructs.team_environment._ProductBase",
    ),
    ServiceRule(
        id="iam.confused-deputy-source-keys",
        rule="A service principal granted in a resource policy (key, queue, topic, bucket, function) should be limited "
        "with aws:SourceArn / aws:SourceAccount (or the service's documented condition, such as "
        "kms:EncryptionContext:aws:logs:arn for CloudWatch Logs) so it acts only for this account's resources.",
        source="https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html; "
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
        enforced_by="mlinfra.constructs.common.alarm_principal",
    ),
    ServiceRule(
        id="iam.eventbridge-kms-no-source-keys",
        rule="EventBridge's KMS requests when delivering to an encrypted SQS queue or SNS topic carry no aws:SourceArn / "
        "aws:SourceAccount, so those conditions on the key policy would drop every event; EventBridge does send "
        "aws:SourceArn (the rule) to the queue or topic policy, which is where deliveries are pinned.",
        source="AWS EventBridge user guide, https://docs.aws.amazon.com/eventbridge/latest/userguide/"
        "eb-use-resource-based.html (SQS and SNS permissions) and the SNS developer guide, "
        "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services",
        enforced_by="mlinfra.constructs.common.events_only_from_this_account",
    ),
    ServiceRule(
        id="iam.github-oidc-job-workflow-ref",
        rule="AWS STS validates GitHub's job_workflow_ref claim as the condition key "
        "token.actions.githubusercontent.com:job_workflow_ref in AssumeRoleWithWebIdentity trust policies (since "
        "2026-02), which pins a role to one (reusable) workflow file at one ref.",
        source="AWS STS announcement (2026-02), provider-specific OIDC claims for GitHub; GitHub docs, "
        "https://docs.github.com/en/actions/reference/security/oidc (job_workflow_ref)",
        enforced_by="mlinfra.constructs.github_oidc.GithubOidcDeployRole",
    ),
    ServiceRule(
        id="lambda.function-url-iam-caller",
        rule="A Lambda function URL with AuthType AWS_IAM accepts only SigV4-signed requests (service name lambda) and "
        "passes the authenticated caller to the function in requestContext.authorizer.iam (accountId, callerId, "
        "userArn, userId); a direct Invoke carries no such context.",
        source="https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html (request payload format); "
        "https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html",
        enforced_by="mlinfra.lambdas.pipeline_approval.handler.caller_arn",
    ),
    ServiceRule(
        id="lambda.function-url-dual-permission",
        rule="Since October 2025 a new function URL needs both lambda:InvokeFunctionUrl and lambda:InvokeFunction; "
        "lambda:FunctionUrlAuthType limits the first to AWS_IAM URLs and lambda:InvokedViaFunctionUrl limits the "
        "second to invocations through a URL.",
        source="https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html",
        enforced_by="mlinfra.constructs.retrain_pipeline.RetrainPipeline.grant_approve",
    ),
)


# --- SageMaker HyperPod --------------------------------------------------------------------------------------------
_HYPERPOD: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="hyperpod.names",
        rule="Cluster, instance-group and partition names are 1-63 characters matching [a-zA-Z0-9](-*[a-zA-Z0-9])*.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateCluster.html (ClusterName, "
        "ClusterInstanceGroupSpecification.InstanceGroupName)",
        enforced_by="mlinfra.domain.hyperpod.name_errors",
    ),
    ServiceRule(
        id="hyperpod.instance-type-offered",
        rule="An instance group's InstanceType must be one HyperPod offers (the ClusterInstanceType enum).",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterInstanceGroupSpecification.html "
        "(InstanceType valid values; botocore sagemaker model ClusterInstanceType)",
        enforced_by="mlinfra.domain.hyperpod.instance_type_errors",
    ),
    ServiceRule(
        id="hyperpod.instance-count",
        rule="InstanceCount is 0 to 6758 per instance group; at most 100 instance groups per cluster.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterInstanceGroupSpecification.html",
        enforced_by="mlinfra.domain.hyperpod.instance_count_errors",
    ),
    ServiceRule(
        id="hyperpod.lifecycle-source-s3-prefix",
        rule="Lifecycle scripts' SourceS3Uri must start with s3://sagemaker- (what the managed cluster instance "
        "policy reads) unless the execution role has an explicit s3:ListBucket/s3:GetObject policy on the bucket.",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterLifeCycleConfig.html",
        enforced_by="mlinfra.domain.hyperpod.lifecycle_uri_errors",
    ),
    ServiceRule(
        id="hyperpod.lifecycle-extended-mode",
        rule="With managed Slurm, lifecycle scripts run as OnInitComplete (Extended mode, after HyperPod configures "
        "Slurm and FSx); OnCreate (Customer Managed mode) leaves the whole node setup to the scripts. The two are "
        "mutually exclusive.",
        source="AWS::SageMaker::Cluster ClusterLifeCycleConfig (CloudFormation resource schema) and "
        "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterLifeCycleConfig.html",
        enforced_by="mlinfra.constructs.hyperpod.HyperPodLifecycle",
    ),
    ServiceRule(
        id="hyperpod.deep-health-checks",
        rule="On-start deep health checks (InstanceStress, InstanceConnectivity) run on accelerated (GPU, Trainium) "
        "instance groups and need the current HyperPod AMI.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-hyperpod-eks-resiliency-deep-health-checks.html "
        "and FACTS.md (SageMaker HyperPod)",
        enforced_by="mlinfra.domain.hyperpod.deep_health_check_errors",
    ),
    ServiceRule(
        id="hyperpod.slurm-topology",
        rule="Managed Slurm: one Controller group, at most one Login group, Compute groups each in one partition "
        "(ClusterSlurmConfig.PartitionNames holds at most one name); API-driven (managed) Slurm runs one controller "
        "node (multi-head controllers are a legacy-configuration feature).",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ClusterSlurmConfig.html and "
        "https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-hyperpod-multihead.html",
        enforced_by="mlinfra.domain.hyperpod.slurm_topology_errors",
    ),
)


# --- S3, DynamoDB, EventBridge, Transfer Family, DataSync (ingestion) ----------------------------------------------
_INGESTION: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="ingestion.s3-key-length",
        rule="An S3 object key is at most 1,024 bytes of UTF-8: a derived key (raw zone, quarantine) past it is "
        "refused by S3, so the glue quarantines (or hashes the quarantine key) instead of retrying forever.",
        source="https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html (object key naming)",
        enforced_by="mlinfra.lambdas.landing_glue.handler.quarantine_key",
    ),
    ServiceRule(
        id="ingestion.dynamodb-item-size",
        rule="A DynamoDB item is at most 400 KB (names and values): a manifest is stored as a header and compressed "
        "shards, never one item.",
        source="https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html (item size)",
        enforced_by="mlinfra.lambdas.landing_glue.handler.manifest_shards",
    ),
    ServiceRule(
        id="ingestion.dynamodb-transaction-items",
        rule="TransactWriteItems takes at most 100 actions, all or none; a cancelled transaction reports one "
        "CancellationReason per action.",
        source="https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html",
        enforced_by="mlinfra.lambdas.landing_glue.handler.count_files",
    ),
    ServiceRule(
        id="ingestion.s3-conditional-copy",
        rule="CopyObject and CompleteMultipartUpload with If-None-Match: * write only when the key does not exist "
        "(412 otherwise, 409 on a concurrent conflict: retry); the only way to write a raw key exactly once.",
        source="https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html and the CopyObject "
        "API reference (IfNoneMatch); moto 5.2.5 ignores it on CopyObject (tests/handlers/faults.py emulates it)",
        enforced_by="mlinfra.lambdas.landing_glue.handler._copy_once",
    ),
    ServiceRule(
        id="ingestion.eventbridge-failed-entries",
        rule="PutEvents can fail some entries without raising: FailedEntryCount > 0 and an ErrorCode per failed "
        "entry; the caller must retry them.",
        source="https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html (FailedEntryCount)",
        enforced_by="mlinfra.lambdas.landing_glue.handler.maybe_emit_ready",
    ),
    ServiceRule(
        id="ingestion.transfer-key-login-sftp-only",
        rule="A custom identity provider call with an empty password is a public-key login, which only SFTP has; "
        "FTP, FTPS and AS2 logins always carry a password.",
        source="https://docs.aws.amazon.com/transfer/latest/userguide/custom-lambda-idp.html and "
        "API_IdentityProviderDetails.html (SftpAuthenticationMethods: SFTP-enabled servers only)",
        enforced_by="mlinfra.lambdas.transfer_idp.handler.authenticate",
    ),
    # (kept here, not in the Step Functions section, to keep parallel changes apart)
    ServiceRule(
        id="stepfunctions.task-token-length",
        rule="SendTaskSuccess/SendTaskFailure: taskToken 1-2048 characters, output at most 262,144 characters, "
        "cause at most 32,768.",
        source="https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskSuccess.html and "
        "botocore's stepfunctions model (tests compare the handler's limits with it)",
        enforced_by="mlinfra.lambdas.pipeline_approval.handler.parse",
    ),
)


# --- DataSync (issue 12 item 12: each successful run becomes a dataset version) -----------------------------------
_DATASYNC: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="datasync.fixed-destination",
        rule="A DataSync S3 location has one fixed Subdirectory, and StartTaskExecution cannot override the "
        "destination (it takes OverrideOptions, Includes, Excludes, ManifestConfig, TaskReportConfig and Tags "
        "only): a per-run destination needs a staging prefix and a copy of the run's files after it.",
        source="https://docs.aws.amazon.com/datasync/latest/userguide/API_StartTaskExecution.html and "
        "API_CreateLocationS3.html (Subdirectory); botocore's datasync model (tests read it)",
        enforced_by="mlinfra.constructs.datasync.DataSyncTask",
    ),
    ServiceRule(
        id="datasync.execution-state-event",
        rule="DataSync sends 'DataSync Task Execution State Change' (source aws.datasync) to EventBridge, best effort, "
        "with the task execution ARN in resources and the execution status in detail.State (SUCCESS and ERROR end "
        "an execution).",
        source="https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-datasync.html, "
        "https://docs.aws.amazon.com/datasync/latest/userguide/events.html ('emitted on a best-effort basis') and the "
        "DataSyncTaskExecutionStateChange event schema (aws-cdk mixins-preview, property State); statuses from "
        "API_DescribeTaskExecution.html",
        enforced_by="mlinfra.lambdas.datasync_promote.handler.parse_event",
    ),
    ServiceRule(
        id="datasync.report-lists-successes",
        rule="A STANDARD task report lists every transferred file only at report level SUCCESSES_AND_ERRORS "
        "(ERRORS_ONLY lists what failed); ObjectVersionIds INCLUDE adds each object's new version id.",
        source="https://docs.aws.amazon.com/datasync/latest/userguide/API_TaskReportConfig.html and task-reports.html",
        enforced_by="mlinfra.constructs.datasync.validate_destination",
    ),
    ServiceRule(
        id="datasync.report-result-pending",
        rule="DescribeTaskExecution's ReportResult.Status is PENDING while DataSync writes the task report, then "
        "SUCCESS or ERROR (a report it could not complete).",
        source="https://docs.aws.amazon.com/datasync/latest/userguide/API_ReportResult.html",
        enforced_by="mlinfra.lambdas.datasync_promote.handler.wait_for_report",
    ),
    ServiceRule(
        id="s3.copy-computes-sha256",
        rule="CopyObject with ChecksumAlgorithm SHA256 makes S3 compute the new object's SHA-256 and return it in "
        "CopyObjectResult.ChecksumSHA256 (a single copy is limited to 5 GiB; multipart checksums are composite).",
        source="https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html (x-amz-checksum-algorithm) and "
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html",
        enforced_by="mlinfra.lambdas.datasync_promote.handler.land_file",
    ),
    ServiceRule(
        id="lambda.runtime-sdk-version",
        rule="A function that ships only its code runs on the boto3/botocore its Lambda runtime includes, whose "
        "version depends on the runtime and the Region and may lag PyPI: CopyObject IfNoneMatch (botocore 1.41) and "
        "PutObject IfNoneMatch (2024, after 1.34) may be missing; requests must use parameters of the oldest "
        "supported model (botocore 1.34.0) or detect the member in the client's model. S3's conditional writes are "
        "the HTTP header If-None-Match: * (honoured by S3 whatever the client's model), so where the model lacks "
        "IfNoneMatch the handlers send the header themselves and the write stays atomic (landing_glue and "
        "datasync_promote _write_once, identical copies).",
        source="https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html ('Runtime-included SDK versions'); "
        "botocore 1.34.0's s3 model (tests/handlers/data/botocore_1_34_0_members.json); "
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html (If-None-Match header; "
        "412 Precondition Failed, 409 ConditionalRequestConflict)",
        enforced_by="mlinfra.lambdas.datasync_promote.handler.land_file",
    ),
    ServiceRule(
        id="datasync.report-fields-by-task-mode",
        rule="Detailed task report entries differ by task mode: Basic mode has SrcMetadata (Type 'Regular'), paths "
        "with a leading '/', FailureCode (integer) and FailureReason; Enhanced mode has SourceMetadata (Type "
        "'Object'), paths without '/', ErrorCode and ErrorDetail.",
        source="https://docs.aws.amazon.com/datasync/latest/userguide/task-reports.html",
        enforced_by="mlinfra.lambdas.datasync_promote.handler.ReportReader",
    ),
    ServiceRule(
        id="datasync.overwrite-mode",
        rule="With OverwriteMode NEVER DataSync does not replace data in the destination that was modified in the "
        "source, so a changed file never reaches a fixed destination again; ALWAYS replaces it (in a versioned "
        "bucket as a new object version).",
        source="https://docs.aws.amazon.com/datasync/latest/userguide/API_Options.html (OverwriteMode)",
        enforced_by="mlinfra.constructs.datasync.DataSyncTask",
    ),
    ServiceRule(
        id="datasync.report-overrides",
        rule="TaskReportConfig.Overrides sets the report level per report (Transferred, Verified, Deleted, Skipped); "
        "at SUCCESSES_AND_ERRORS the Skipped report lists every unchanged file on every run.",
        source="https://docs.aws.amazon.com/datasync/latest/userguide/API_ReportOverrides.html and task-reports.html; "
        "botocore's datasync model (CreateTask TaskReportConfig, tests validate the template's value)",
        enforced_by="mlinfra.constructs.datasync.DataSyncTask",
    ),
)


# --- Drift monitoring (issue 15): SageMaker Processing, CloudWatch, EventBridge, Scheduler ------------------------
_MONITORING: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="sagemaker.processing-max-runtime",
        rule="A processing job's StoppingCondition.MaxRuntimeInSeconds is between 1 and 777600 (9 days).",
        source="https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingStoppingCondition.html",
        enforced_by="mlinfra.constructs.drift_monitor.validate_max_runtime",
    ),
    ServiceRule(
        id="sagemaker.list-processing-jobs-resource",
        rule="sagemaker:ListProcessingJobs supports no resource-level permissions: a policy allowing it must name "
        "Resource '*' (an ARN never matches, the call is denied).",
        source="https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html",
        enforced_by="mlinfra.constructs.drift_monitor.DriftMonitor",
    ),
    ServiceRule(
        id="cloudwatch.put-metric-data-limits",
        rule="One PutMetricData request carries at most 1000 metrics, up to 30 dimensions each, and no NaN or "
        "infinite values.",
        source="https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html",
        enforced_by="mlinfra.domain.drift.job.put_metrics",
    ),
)


# --- Billing (what `mlinfra cost` relies on; mlinfra.domain.cost.pricers) ------------------------------------------
_COST: tuple[ServiceRule, ...] = (
    ServiceRule(
        id="cost.transfer-server-billed-until-deleted",
        rule="A Transfer Family server is billed per enabled protocol per hour from creation until deletion, "
        "also while it is stopped.",
        source="https://aws.amazon.com/aws-transfer-family/pricing/",
        enforced_by="mlinfra.domain.cost.pricers.transfer_server",
    ),
    ServiceRule(
        id="cost.interface-endpoint-per-az-hour",
        rule="An interface VPC endpoint is billed per hour in each Availability Zone it is provisioned in, "
        "whatever its traffic; gateway endpoints (S3, DynamoDB) have no charge.",
        source="https://aws.amazon.com/privatelink/pricing/",
        enforced_by="mlinfra.domain.cost.pricers.vpc_endpoint",
    ),
    ServiceRule(
        id="cost.public-ipv4-hourly",
        rule="Every public IPv4 address (a NAT gateway's Elastic IP included) is billed per hour, attached or not.",
        source="https://aws.amazon.com/vpc/pricing/ (Public IPv4 Address)",
        enforced_by="mlinfra.domain.cost.pricers.eip",
    ),
    ServiceRule(
        id="cost.endpoint-instances-at-the-floor",
        rule="An instance-backed SageMaker endpoint bills every running instance-hour; an asynchronous endpoint "
        "can scale to zero instances (MinCapacity 0), a real-time instance variant keeps at least one.",
        source="https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html",
        enforced_by="mlinfra.domain.cost.pricers.sagemaker_endpoint",
    ),
)


def _index(*sections: tuple[ServiceRule, ...]) -> dict[str, ServiceRule]:
    table: dict[str, ServiceRule] = {}
    for section in sections:
        for r in section:
            if r.id in table:
                raise ValueError(f"service rule id {r.id!r} is defined twice")
            table[r.id] = r
    return table


#: Every rule, by id.
RULES: dict[str, ServiceRule] = _index(
    _SAGEMAKER, _STEPFUNCTIONS, _BATCH, _PARALLELCLUSTER, _FSX, _EC2, _IAM, _HYPERPOD, _INGESTION, _COST,
    _MONITORING, _DATASYNC,
)


def rule(rule_id: str) -> ServiceRule:
    """The rule with this id; a KeyError naming the known ids otherwise."""
    try:
        return RULES[rule_id]
    except KeyError:
        raise KeyError(f"unknown service rule {rule_id!r}; known: {sorted(RULES)}") from None


def cite(rule_id: str) -> str:
    """The suffix every violation message carries: ``(AWS rule <id>: <source>)``."""
    r = rule(rule_id)
    return f"(AWS rule {r.id}: {r.source})"
