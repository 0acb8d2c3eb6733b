"""TeamEnvironment and TeamPortfolio: self-service ML environments vended to teams.

A :class:`TeamEnvironment` gives one team, inside the shared platform:

- lake access scoped to the team's prefixes (``grant_read`` / ``grant_write`` of the lake with a prefix,
  which also grant the lake key), read-only on ``read_prefixes``, read-write on ``write_prefixes``;
- a team role its administrators assume, a SageMaker execution role and a Batch job role, all under the IAM
  path ``/mlinfra/team/<name>/`` and all carrying the team's **permissions boundary**; the boundary also
  forces every role the team creates to carry it (``iam:CreateRole`` only with the boundary attached) and
  forbids removing it;
- a SageMaker Model Package Group (RETAINED: registered model versions are data);
- a Batch compute environment (managed EC2, the team's GPU instance families, ``max_vcpus`` = the quota,
  scaling to zero, IMDSv2) and job queue;
- an AWS Budgets cost budget filtered on the team's cost-allocation tag, with alert thresholds notifying an
  encrypted SNS topic (and e-mail subscribers);
- cost-allocation tags (``team``, ``team-cost-centre``) on every resource, besides the platform's tags.

A :class:`TeamPortfolio` is the Service Catalog portfolio shared with the teams' principals: products built
from CDK ``ProductStack`` s (a SageMaker real-time endpoint and a team training queue) with a launch
constraint (a launch role, so users need no direct permissions), tag options (team, cost centre) and
validated parameters; each product carries ``sagemaker:studio-visibility=true`` so it appears as a
SageMaker project template in Studio.

Removing a team deletes its compute and roles; its data (lake prefixes, model registry) is RETAINED.
"""

from __future__ import annotations

import re
from typing import Sequence

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_servicecatalog as servicecatalog
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from mlinfra.constructs.common import acknowledge, is_token
from mlinfra.constructs.data_lake import _LakeBase, validate_prefix
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards
from mlinfra.domain.lake import ZONES
from mlinfra.domain.teams import family_min_vcpus, prefixes_overlap

__all__ = ["TeamEnvironment", "TeamPortfolio", "team_role_path", "STUDIO_VISIBILITY_TAG"]

#: The tag that makes a Service Catalog product a SageMaker project template in Studio.
STUDIO_VISIBILITY_TAG = ("sagemaker:studio-visibility", "true")

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,20}[a-z0-9]$")
#: The wildcard action groups of ``IBucket.grant_read`` / ``grant_put``.
_TAG_PRIORITY = 300  # above the platform-wide tag aspect (100)


def team_role_path(team: str) -> str:
    """The IAM path of every role of ``team``: ``/mlinfra/team/<team>/``."""
    return f"/mlinfra/team/{team}/"


class TeamEnvironment(Construct):
    """One team's scoped slice of the platform.

    :param team_name: the team: 3-22 lowercase letters, digits or hyphens.
    :param cost_centre: tagged as ``team-cost-centre`` on every resource of the team.
    :param lake: the platform's lake (``DataLake`` or ``ImportedDataLake``).
    :param read_prefixes: ``<zone>/<prefix>/`` values the team may read. :default: none
    :param write_prefixes: ``<zone>/<prefix>/`` values the team may read and write (never delete). :default: none
    :param admin_principals: who may assume the team role. :default: the account (its administrators decide)
    :param vpc: the VPC of the team's Batch compute environment.
    :param vpc_subnets: its subnets. :default: the VPC's private subnets
    :param instance_families: GPU instance families of the compute environment (``g5``, ``p4d``...). :default: g5
    :param max_vcpus: the team's vCPU quota (the compute environment's maximum). :default: 64
    :param monthly_budget_usd: the monthly cost budget. :default: 1000
    :param budget_thresholds_percent: alert thresholds in percent of the budget (actual cost; the highest is
        also sent on forecast). :default: 50, 80, 100
    :param alert_emails: e-mail subscribers of the budget topic. :default: none
    :param model_package_group_name: :default: ``<team_name>-models``
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        team_name: str,
        cost_centre: str,
        lake: _LakeBase,
        vpc: ec2.IVpc,
        read_prefixes: Sequence[str] = (),
        write_prefixes: Sequence[str] = (),
        admin_principals: Sequence[iam.IPrincipal] = (),
        vpc_subnets: ec2.SubnetSelection | None = None,
        instance_families: Sequence[str] = ("g5",),
        max_vcpus: int = 64,
        monthly_budget_usd: float = 1000.0,
        budget_thresholds_percent: Sequence[int] = (50, 80, 100),
        alert_emails: Sequence[str] = (),
        model_package_group_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        _validate_name(team_name)
        reads = [_split_prefix(p, "read_prefixes") for p in read_prefixes]
        writes = [_split_prefix(p, "write_prefixes") for p in write_prefixes]
        _validate_families(instance_families, max_vcpus)
        _validate_budget(monthly_budget_usd, budget_thresholds_percent)
        self.team_name = team_name
        self.cost_centre = cost_centre
        self.write_prefixes = list(write_prefixes)
        self.read_prefixes = list(read_prefixes)
        path = team_role_path(team_name)
        stack = cdk.Stack.of(self)

        # --- roles: every role of the team lives under its path and carries the boundary ---
        roles_scope = Construct(self, "Roles")
        # Named, so the boundary's own statements can require it on new roles without a self-reference.
        boundary_name = f"{stack.stack_name}-{id}-boundary"[-128:].lstrip("-")
        self.permissions_boundary = iam.ManagedPolicy(
            self,
            "PermissionsBoundary",
            managed_policy_name=boundary_name,
            description=f"Permissions boundary of team {team_name}: the most any of its roles may do",
            path=path,
        )
        self.permissions_boundary_arn = stack.format_arn(
            service="iam", region="", resource="policy", resource_name=f"{path.strip('/')}/{boundary_name}",
        )
        self.team_role = iam.Role(
            roles_scope,
            "TeamRole",
            path=path,
            description=f"Team {team_name}: its members' role (lake prefixes, Batch queue, model registry)",
            assumed_by=iam.CompositePrincipal(*admin_principals) if admin_principals else iam.AccountRootPrincipal(),
            max_session_duration=cdk.Duration.hours(4),
        )
        self.execution_role = iam.Role(
            roles_scope,
            "SageMakerExecutionRole",
            path=path,
            description=f"Team {team_name}: SageMaker training, processing and endpoints",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        )
        self.job_role = iam.Role(
            roles_scope,
            "BatchJobRole",
            path=path,
            description=f"Team {team_name}: the role its Batch jobs run as",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
        )
        iam.PermissionsBoundary.of(roles_scope).apply(self.permissions_boundary)
        self.roles: list[iam.Role] = [self.team_role, self.execution_role, self.job_role]

        # --- lake access, scoped to the team's prefixes ---
        for role in self.roles:
            for zone, prefix in reads:
                lake.grant_read(zone, role, prefix)
            for zone, prefix in writes:
                lake.grant_read(zone, role, prefix)
                lake.grant_write(zone, role, prefix)

        # --- model registry (RETAINED) ---
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=model_package_group_name or f"{team_name}-models",
            model_package_group_description=f"Registered model versions of team {team_name}",
        )
        self.model_package_group.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        group_arn = stack.format_arn(
            service="sagemaker", resource="model-package-group",
            resource_name=self.model_package_group.model_package_group_name,
        )
        package_arn = stack.format_arn(
            service="sagemaker", resource="model-package",
            resource_name=f"{self.model_package_group.model_package_group_name}/*",
        )
        for role in (self.team_role, self.execution_role):
            role.add_to_policy(iam.PolicyStatement(
                actions=["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackageGroup",
                         "sagemaker:ListModelPackages"],
                resources=[group_arn],
            ))
            role.add_to_policy(iam.PolicyStatement(
                actions=["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
                resources=[package_arn],
            ))
        self.team_role.add_to_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[self.execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ))

        # --- compute: a Batch queue capped at the team's quota ---
        self._build_compute(vpc, vpc_subnets, instance_families, max_vcpus)

        # --- the boundary: the ceiling of every team role, and of every role the team creates ---
        self._fill_boundary(lake, reads, writes, path, group_arn, package_arn)

        # --- budget ---
        self._build_budget(monthly_budget_usd, budget_thresholds_percent, alert_emails)

        # --- cost allocation tags on every resource of the team ---
        # The platform's own tags (project, environment, cost-centre) stay on every resource; the team's cost
        # centre goes under its own key so both the platform's and the team's chargeback views work.
        cdk.Tags.of(self).add("team", team_name, priority=_TAG_PRIORITY)
        cdk.Tags.of(self).add("team-cost-centre", cost_centre, priority=_TAG_PRIORITY)

        own_objects = [f"*/{prefix}*" for _, prefix in [*reads, *writes]]
        for role in self.roles:
            acknowledge_wildcards(
                role,
                "Wildcards are object keys under the team's own lake prefixes, its own model packages and job "
                "definitions, and the S3/KMS action groups of the lake's prefix-scoped grants",
                actions=[*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS],
                resources=[*own_objects, f"*:model-package/{self.model_package_group.model_package_group_name}/*",
                           f"*:job-definition/{team_name}-*"],
            )

    # ------------------------------------------------------------------------------------------
    def _build_compute(self, vpc, vpc_subnets, instance_families, max_vcpus) -> None:
        compute = Construct(self, "Compute")
        # Platform-owned infrastructure roles (Batch and ECS agents); the team cannot modify them: the boundary
        # allows IAM changes only on roles under the team's path.
        service_role = iam.Role(
            compute,
            "BatchServiceRole",
            assumed_by=iam.ServicePrincipal("batch.amazonaws.com"),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSBatchServiceRole")],
        )
        instance_role = iam.Role(
            compute,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(
                "service-role/AmazonEC2ContainerServiceforEC2Role")],
        )
        for role, policy in ((service_role, "AWSBatchServiceRole"), (instance_role, "AmazonEC2ContainerServiceforEC2Role")):
            acknowledge(role, f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/{policy}]", "The AWS managed Batch/ECS service policies are the documented "
                        "minimum for a managed compute environment and its ECS agents")
        profile = iam.CfnInstanceProfile(compute, "InstanceProfile", roles=[instance_role.role_name])
        self.security_group = ec2.SecurityGroup(
            compute, "SecurityGroup", vpc=vpc, allow_all_outbound=True,
            description=f"Batch instances of team {self.team_name}: no inbound, outbound to AWS APIs and the lake",
        )
        launch_template = ec2.CfnLaunchTemplate(
            compute,
            "LaunchTemplate",
            launch_template_data=ec2.CfnLaunchTemplate.LaunchTemplateDataProperty(
                metadata_options=ec2.CfnLaunchTemplate.MetadataOptionsProperty(
                    http_tokens="required", http_endpoint="enabled", http_put_response_hop_limit=2,
                ),
            ),
        )
        subnets = _subnets(vpc, vpc_subnets)
        self.compute_environment = batch.CfnComputeEnvironment(
            compute,
            "ComputeEnvironment",
            type="MANAGED",
            state="ENABLED",
            service_role=service_role.role_arn,
            compute_resources=batch.CfnComputeEnvironment.ComputeResourcesProperty(
                type="EC2",
                allocation_strategy="BEST_FIT_PROGRESSIVE",
                minv_cpus=0,
                maxv_cpus=max_vcpus,
                instance_types=list(instance_families),
                subnets=subnets,
                security_group_ids=[self.security_group.security_group_id],
                instance_role=profile.attr_arn,
                launch_template=batch.CfnComputeEnvironment.LaunchTemplateSpecificationProperty(
                    launch_template_id=launch_template.ref, version="$Latest",
                ),
                tags={"team": self.team_name, "team-cost-centre": self.cost_centre},
            ),
            replace_compute_environment=False,
        )
        self.job_queue = batch.CfnJobQueue(
            compute,
            "JobQueue",
            priority=1,
            state="ENABLED",
            compute_environment_order=[batch.CfnJobQueue.ComputeEnvironmentOrderProperty(
                order=1, compute_environment=self.compute_environment.ref,
            )],
        )
        self.max_vcpus = max_vcpus
        stack = cdk.Stack.of(self)
        self.team_role.add_to_policy(iam.PolicyStatement(
            actions=["batch:SubmitJob"],
            resources=[self.job_queue.ref, stack.format_arn(service="batch", resource="job-definition",
                                                            resource_name=f"{self.team_name}-*")],
        ))
        self.team_role.add_to_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[self.job_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ))

    def _fill_boundary(self, lake, reads, writes, path, group_arn, package_arn) -> None:
        stack = cdk.Stack.of(self)
        b = self.permissions_boundary
        object_arns = [lake.bucket(z).arn_for_objects(f"{p}*") for z, p in [*reads, *writes]]
        bucket_arns = sorted({lake.bucket(z).bucket_arn for z, _ in [*reads, *writes]}, key=str)
        if object_arns:
            b.add_statements(iam.PolicyStatement(
                sid="LakeObjectsUnderTeamPrefixes",
                actions=["s3:GetObject*", "s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload",
                         "s3:ListMultipartUploadParts"],
                resources=object_arns,
            ))
            b.add_statements(iam.PolicyStatement(
                sid="LakeBuckets", actions=["s3:ListBucket", "s3:GetBucketLocation"], resources=bucket_arns,
            ))
        if lake.encryption_key is not None:
            b.add_statements(iam.PolicyStatement(
                sid="LakeKey",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey"],
                resources=[lake.encryption_key.key_arn],
            ))
        b.add_statements(
            iam.PolicyStatement(
                sid="TeamWork",
                actions=["sagemaker:*", "batch:Describe*", "batch:List*", "batch:TerminateJob", "batch:CancelJob",
                         "batch:RegisterJobDefinition", "logs:CreateLogGroup", "logs:CreateLogStream",
                         "logs:PutLogEvents", "logs:Describe*", "logs:GetLogEvents", "cloudwatch:PutMetricData",
                         "cloudwatch:GetMetricData", "ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                         "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "ec2:Describe*",
                         "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                         "ec2:CreateNetworkInterfacePermission", "servicecatalog:*"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="OwnQueue", actions=["batch:SubmitJob"],
                resources=[self.job_queue.ref, stack.format_arn(service="batch", resource="job-definition",
                                                                resource_name=f"{self.team_name}-*")],
            ),
            iam.PolicyStatement(
                sid="PassOnlyTeamRoles", actions=["iam:PassRole", "iam:GetRole"],
                resources=[stack.format_arn(service="iam", region="", resource="role",
                                            resource_name=f"{path.strip('/')}/*")],
            ),
            iam.PolicyStatement(
                sid="CreateRolesOnlyWithThisBoundary",
                actions=["iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy",
                         "iam:DetachRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy"],
                resources=[stack.format_arn(service="iam", region="", resource="role",
                                            resource_name=f"{path.strip('/')}/*")],
                conditions={"StringEquals": {"iam:PermissionsBoundary": self.permissions_boundary_arn}},
            ),
            iam.PolicyStatement(
                sid="NeverRemoveOrEditTheBoundary", effect=iam.Effect.DENY,
                actions=["iam:DeleteRolePermissionsBoundary", "iam:CreatePolicyVersion", "iam:DeletePolicy",
                         "iam:DeletePolicyVersion", "iam:SetDefaultPolicyVersion"],
                resources=["*"],
            ),
        )
        acknowledge_wildcards(
            b,
            "A permissions boundary is a ceiling, not a grant: wildcards bound the team's SageMaker, Batch and "
            "logging work and its lake prefixes; the roles' own policies are prefix and resource scoped",
            actions=["s3:GetObject*", *KMS_WILDCARD_ACTIONS, "sagemaker:*", "batch:Describe*", "batch:List*",
                     "logs:Describe*", "ec2:Describe*", "servicecatalog:*"],
            resources=["*", *[f"*/{prefix}*" for _, prefix in [*reads, *writes]], f"*:job-definition/{self.team_name}-*",
                       f"*:role{path}*"],
        )

    def _build_budget(self, amount: float, thresholds: Sequence[int], emails: Sequence[str]) -> None:
        key = kms.Key(self, "AlertKey", enable_key_rotation=True,
                      description=f"Encrypts the budget alert topic of team {self.team_name}")
        key.grant_encrypt_decrypt(iam.ServicePrincipal("budgets.amazonaws.com"))
        self.alert_topic = sns.Topic(self, "BudgetAlerts", master_key=key, enforce_ssl=True,
                                     display_name=f"Budget alerts of team {self.team_name}")
        self.alert_topic.add_to_resource_policy(iam.PolicyStatement(
            actions=["sns:Publish"], principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
            resources=[self.alert_topic.topic_arn],
            conditions={"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}},
        ))
        for email in emails:
            self.alert_topic.add_subscription(subs.EmailSubscription(email))
        notifications = []
        top = max(thresholds)
        for threshold in sorted(set(thresholds)):
            kinds = ["ACTUAL", "FORECASTED"] if threshold == top else ["ACTUAL"]
            for kind in kinds:
                notifications.append(budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        comparison_operator="GREATER_THAN", notification_type=kind,
                        threshold=float(threshold), threshold_type="PERCENTAGE",
                    ),
                    subscribers=[budgets.CfnBudget.SubscriberProperty(
                        subscription_type="SNS", address=self.alert_topic.topic_arn)],
                ))
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=amount, unit="USD"),
                # The `team` tag must be activated as a cost allocation tag in the Billing console.
                cost_filters={"TagKeyValue": [f"user:team${self.team_name}"]},
            ),
            notifications_with_subscribers=notifications,
        )


class TeamPortfolio(Construct):
    """The Service Catalog portfolio of self-service products, shared with the teams.

    :param teams: the vended teams; each team role gets access, and its name and cost centre become tag options.
    :param display_name: :default: "mlinfra self-service ML"
    :param provider_name: :default: "ML platform team"
    :param endpoint_instance_types: instance types the endpoint product offers. :default: ml.g5 and ml.m5 sizes
    :param max_training_vcpus: the largest quota the training-queue product accepts. :default: 256
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        teams: Sequence[TeamEnvironment],
        display_name: str = "mlinfra self-service ML",
        provider_name: str = "ML platform team",
        endpoint_instance_types: Sequence[str] = ("ml.g5.xlarge", "ml.g5.2xlarge", "ml.m5.xlarge", "ml.m5.2xlarge"),
        max_training_vcpus: int = 256,
    ) -> None:
        super().__init__(scope, id)
        if not teams:
            raise ValueError("teams must list at least one TeamEnvironment, got: []")
        bad = [t for t in endpoint_instance_types if not t.startswith("ml.")]
        if bad:
            raise ValueError(f"endpoint_instance_types must be SageMaker instance types starting with 'ml.', got: {bad}")
        self.portfolio = servicecatalog.Portfolio(
            self, "Portfolio", display_name=display_name, provider_name=provider_name,
            description="Self-service ML environments: endpoints and training queues, launched under a launch role",
        )
        self.launch_role = iam.Role(
            self,
            "LaunchRole",
            assumed_by=iam.ServicePrincipal("servicecatalog.amazonaws.com"),
            description="Service Catalog launch constraint: provisions the self-service products",
        )
        self.launch_role.add_to_policy(iam.PolicyStatement(
            actions=["sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:CreateEndpointConfig",
                     "sagemaker:DeleteEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:DeleteEndpoint",
                     "sagemaker:UpdateEndpoint", "sagemaker:Describe*", "sagemaker:AddTags",
                     "batch:CreateComputeEnvironment", "batch:UpdateComputeEnvironment",
                     "batch:DeleteComputeEnvironment", "batch:CreateJobQueue", "batch:UpdateJobQueue",
                     "batch:DeleteJobQueue", "batch:Describe*", "batch:TagResource",
                     "cloudformation:CreateStack", "cloudformation:DeleteStack", "cloudformation:UpdateStack",
                     "cloudformation:Describe*", "cloudformation:GetTemplateSummary", "cloudformation:SetStackPolicy",
                     "cloudformation:ValidateTemplate", "s3:GetObject", "ec2:Describe*"],
            resources=["*"],
        ))
        for team in teams:
            self.launch_role.add_to_policy(iam.PolicyStatement(
                actions=["iam:PassRole"], resources=[team.execution_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ))
        acknowledge_wildcards(
            self.launch_role,
            "The launch role creates the products' SageMaker, Batch and CloudFormation resources, whose names "
            "and ARNs are chosen at launch; iam:PassRole names each team's execution role",
            actions=["sagemaker:Describe*", "batch:Describe*", "cloudformation:Describe*", "ec2:Describe*"],
            resources=["*"],
        )

        self.products: dict[str, servicecatalog.CloudFormationProduct] = {}
        endpoint = servicecatalog.CloudFormationProduct(
            self,
            "EndpointProduct",
            product_name="SageMaker real-time endpoint",
            owner=provider_name,
            description="A KMS-encrypted SageMaker real-time endpoint serving a model artifact from the lake",
            product_versions=[servicecatalog.CloudFormationProductVersion(
                product_version_name="v1",
                cloud_formation_template=servicecatalog.CloudFormationTemplate.from_product_stack(
                    _EndpointProduct(self, "EndpointProductStack", instance_types=endpoint_instance_types)),
            )],
        )
        training = servicecatalog.CloudFormationProduct(
            self,
            "TrainingQueueProduct",
            product_name="GPU training queue",
            owner=provider_name,
            description="An extra Batch job queue on a team's GPU compute environment",
            product_versions=[servicecatalog.CloudFormationProductVersion(
                product_version_name="v1",
                cloud_formation_template=servicecatalog.CloudFormationTemplate.from_product_stack(
                    _TrainingQueueProduct(self, "TrainingQueueProductStack")),
            )],
        )
        self.products = {"endpoint": endpoint, "training-queue": training}
        tag_options = servicecatalog.TagOptions(
            self, "TagOptions",
            allowed_values_for_tags={
                "team": sorted(t.team_name for t in teams),
                "team-cost-centre": sorted({t.cost_centre for t in teams}),
            },
        )
        for product in self.products.values():
            self.portfolio.add_product(product)
            self.portfolio.set_launch_role(product, self.launch_role)
            cdk.Tags.of(product).add(*STUDIO_VISIBILITY_TAG)
        self.portfolio.associate_tag_options(tag_options)
        for team in teams:
            self.portfolio.give_access_to_role(team.team_role)


class _EndpointProduct(servicecatalog.ProductStack):
    """Product template: model + encrypted endpoint config + endpoint, parameters validated."""

    def __init__(self, scope: Construct, id: str, *, instance_types: Sequence[str]) -> None:
        super().__init__(scope, id)
        image = cdk.CfnParameter(self, "ImageUri", type="String", description="Inference container image (ECR)",
                                 allowed_pattern=r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/.+$")
        model_data = cdk.CfnParameter(self, "ModelDataUrl", type="String", description="s3:// URI of model.tar.gz",
                                      allowed_pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+\.tar\.gz$")
        role = cdk.CfnParameter(self, "ExecutionRoleArn", type="String",
                                description="The team's SageMaker execution role",
                                allowed_pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/mlinfra/team/[a-z0-9-]+/.+$")
        instance_type = cdk.CfnParameter(self, "InstanceType", type="String", allowed_values=list(instance_types),
                                         default=instance_types[0])
        instance_count = cdk.CfnParameter(self, "InstanceCount", type="Number", default=1, min_value=1, max_value=8)
        key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts the endpoint's storage volumes")
        model = sagemaker.CfnModel(
            self, "Model", execution_role_arn=role.value_as_string, enable_network_isolation=True,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.value_as_string, model_data_url=model_data.value_as_string),
        )
        config = sagemaker.CfnEndpointConfig(
            self, "EndpointConfig", kms_key_id=key.key_arn,
            production_variants=[sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name="AllTraffic", model_name=model.attr_model_name,
                initial_instance_count=instance_count.value_as_number, initial_variant_weight=1.0,
                instance_type=instance_type.value_as_string,
            )],
        )
        endpoint = sagemaker.CfnEndpoint(self, "Endpoint", endpoint_config_name=config.attr_endpoint_config_name)
        acknowledge(model, "AwsSolutions-SM1", "The product endpoint runs with network isolation; the team "
                    "chooses a VPC-attached variant through the platform's serving construct")
        cdk.CfnOutput(self, "EndpointName", value=endpoint.attr_endpoint_name)


class _TrainingQueueProduct(servicecatalog.ProductStack):
    """Product template: a job queue on an existing compute environment (the team's, given by ARN)."""

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        ce = cdk.CfnParameter(self, "ComputeEnvironmentArn", type="String",
                              description="The team's Batch compute environment",
                              allowed_pattern=r"^arn:aws[a-z-]*:batch:[a-z0-9-]+:\d{12}:compute-environment/.+$")
        priority = cdk.CfnParameter(self, "Priority", type="Number", default=10, min_value=1, max_value=100)
        queue = batch.CfnJobQueue(
            self, "JobQueue", priority=priority.value_as_number, state="ENABLED",
            compute_environment_order=[batch.CfnJobQueue.ComputeEnvironmentOrderProperty(
                order=1, compute_environment=ce.value_as_string)],
        )
        cdk.CfnOutput(self, "JobQueueArn", value=queue.ref)


# --- validation -------------------------------------------------------------------------------------


def _validate_name(name: str) -> None:
    if not is_token(name) and not _NAME_RE.fullmatch(name or ""):
        raise ValueError(f"team_name must be 3-22 lowercase letters, digits or hyphens, starting with a letter, got: {name!r}")


def _split_prefix(value: str, prop: str) -> tuple[str, str]:
    zone, _, prefix = value.partition("/")
    if zone not in ZONES:
        raise ValueError(f"{prop} must be <zone>/<prefix>/ with a zone of {list(ZONES)}, got: {value!r}")
    validate_prefix(prefix, prop)
    return zone, prefix


def _validate_families(families: Sequence[str], max_vcpus: int) -> None:
    known = family_min_vcpus()
    if not families:
        raise ValueError("instance_families must list at least one GPU instance family, got: []")
    unknown = [f for f in families if f not in known]
    if unknown:
        raise ValueError(f"instance_families: unknown instance family {unknown}; allowed: {sorted(known)}")
    too_small = {f: known[f] for f in families if known[f] > max_vcpus}
    if too_small:
        raise ValueError(
            f"max_vcpus is below one instance of an allowed family (smallest size's vCPUs: {too_small}), got: {max_vcpus}"
        )


def _validate_budget(amount: float, thresholds: Sequence[int]) -> None:
    if amount <= 0:
        raise ValueError(f"monthly_budget_usd must be positive, got: {amount}")
    if not thresholds or len(thresholds) > 5 or any(not 1 <= t <= 1000 for t in thresholds):
        raise ValueError(f"budget_thresholds_percent must be 1-5 values between 1 and 1000, got: {list(thresholds)}")


def _subnets(vpc: ec2.IVpc, selection: ec2.SubnetSelection | None) -> list[str]:
    chosen = vpc.select_subnets(**_selection_kwargs(selection)) if selection else None
    if chosen is None:
        try:
            chosen = vpc.select_subnets(subnet_group_name="private")
        except Exception:  # an imported VPC without mlinfra's group names
            chosen = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
    return chosen.subnet_ids


def _selection_kwargs(selection: ec2.SubnetSelection) -> dict:
    out = {}
    for name in ("subnets", "subnet_type", "subnet_group_name", "availability_zones", "one_per_az"):
        value = getattr(selection, name, None)
        if value is not None:
            out[name] = value
    return out


def validate_team_write_overlap(teams: Sequence[TeamEnvironment]) -> None:
    """Raise when two teams' write prefixes overlap (one contains the other)."""
    for i, a in enumerate(teams):
        for b in teams[i + 1:]:
            for pa in a.write_prefixes:
                for pb in b.write_prefixes:
                    if prefixes_overlap(pa, pb):
                        raise ValueError(
                            f"write_prefixes of teams {a.team_name!r} and {b.team_name!r} overlap, got: {pa!r} and {pb!r}"
                        )
    names = [t.team_name for t in teams]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"team_name must be unique across teams, got duplicates: {dupes}")
