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

from mlinfra.constructs.common import BATCH_BASIC_MONITORING, BATCH_HOP_LIMIT, acknowledge, is_token, limit_grants_to_aws_services, path_in_errors
from mlinfra.constructs.data_lake import IDataLake, validate_prefix
from mlinfra.domain.hosting_instances import family_of, parse_instance_type
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards
from mlinfra.domain.lake import ZONES
from mlinfra.domain.teams import family_min_vcpus, prefixes_overlap

__all__ = ["TeamEnvironment", "TeamPortfolio", "team_role_path", "STUDIO_VISIBILITY_TAG"]

#: The tag that makes a Service Catalog product a SageMaker project template in Studio.
STUDIO_VISIBILITY_TAG = ("sagemaker:studio-visibility", "true")

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,20}[a-z0-9]$")
_PRINCIPAL_PATTERN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|\*):role/[A-Za-z0-9+=,.@_/*-]+$")
#: The wildcard action groups of ``IBucket.grant_read`` / ``grant_put``.
_TAG_PRIORITY = 300  # above the platform-wide tag aspect (100)


def team_role_path(team: str) -> str:
    """The IAM path of every role of ``team``: ``/mlinfra/team/<team>/``."""
    return f"/mlinfra/team/{team}/"


#: SageMaker resource types a team creates, named ``<team>-*`` (training, processing, transform, hosting).
_SAGEMAKER_OWN_TYPES = ("training-job", "processing-job", "transform-job", "model", "endpoint-config", "endpoint",
                        "project")


def sagemaker_work_statements(stack: cdk.Stack, team: str, *, sid: str | None = None) -> list[iam.PolicyStatement]:
    """The team's SageMaker work: create, describe, stop and delete only resources named ``<team>-*`` (SageMaker ARNs
    carry the resource name), list and search anywhere (names only)."""
    own = [stack.format_arn(service="sagemaker", resource=t, resource_name=f"{team}-*") for t in _SAGEMAKER_OWN_TYPES]
    return [
        iam.PolicyStatement(
            sid=sid,
            actions=["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                     "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
                     "sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob", "sagemaker:StopTransformJob",
                     "sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel",
                     "sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
                     "sagemaker:DeleteEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:DescribeEndpoint",
                     "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:InvokeEndpoint",
                     "sagemaker:CreateProject", "sagemaker:DescribeProject", "sagemaker:DeleteProject",
                     "sagemaker:AddTags", "sagemaker:ListTags"],
            resources=own,
        ),
        iam.PolicyStatement(
            sid=f"{sid}Lists" if sid else None,
            actions=["sagemaker:ListTrainingJobs", "sagemaker:ListProcessingJobs", "sagemaker:ListTransformJobs",
                     "sagemaker:ListModels", "sagemaker:ListEndpointConfigs", "sagemaker:ListEndpoints",
                     "sagemaker:ListProjects", "sagemaker:ListModelPackageGroups"],
            resources=["*"],
        ),
    ]


def service_catalog_end_user_statements(*, sid: str | None = None) -> list[iam.PolicyStatement]:
    """Service Catalog as an end user: browse and provision the portfolios shared with the principal, and manage
    only the provisioned products of the same role (``servicecatalog:roleLevel``). No administration."""
    return [
        iam.PolicyStatement(
            sid=sid,
            actions=["servicecatalog:SearchProducts", "servicecatalog:DescribeProduct", "servicecatalog:DescribeProductView",
                     "servicecatalog:ListLaunchPaths", "servicecatalog:DescribeProvisioningParameters",
                     "servicecatalog:ListProvisioningArtifacts", "servicecatalog:DescribeProvisioningArtifact",
                     "servicecatalog:ProvisionProduct", "servicecatalog:DescribeRecord",
                     "servicecatalog:ListRecordHistory", "servicecatalog:ListPortfolios"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid=f"{sid}OwnProvisioned" if sid else None,
            actions=["servicecatalog:DescribeProvisionedProduct", "servicecatalog:UpdateProvisionedProduct",
                     "servicecatalog:TerminateProvisionedProduct", "servicecatalog:SearchProvisionedProducts",
                     "servicecatalog:ScanProvisionedProducts"],
            resources=["*"],
            conditions={"StringEquals": {"servicecatalog:roleLevel": "self"}},
        ),
    ]


def execution_statements(stack: cdk.Stack, team: str, *, sid: str | None = None) -> list[iam.PolicyStatement]:
    """What a team's jobs and endpoints need at run time: their CloudWatch Logs streams (jobs ``<team>-*`` in the
    shared SageMaker groups, endpoints ``<team>-*``), metrics in SageMaker namespaces, image pulls (the team's
    repositories ``<team>/*`` and AWS Deep Learning Containers) and ENIs for VPC-attached jobs."""
    logs = lambda name: stack.format_arn(service="logs", resource="log-group", resource_name=name,  # noqa: E731
                                         arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
    return [
        iam.PolicyStatement(  # log groups are shared by every team's jobs (CloudWatch Logs authorizes these on groups)
            sid=sid, actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams"],
            resources=[logs("/aws/sagemaker/*")],
        ),
        iam.PolicyStatement(  # events only into the team's own streams (jobs <team>-*) and endpoint groups
            sid=f"{sid}OwnStreams" if sid else None, actions=["logs:PutLogEvents"],
            resources=[logs(f"/aws/sagemaker/Endpoints/{team}-*:log-stream:*"),
                       *[logs(f"/aws/sagemaker/{g}:log-stream:{team}-*") for g in
                         ("TrainingJobs", "ProcessingJobs", "TransformJobs")]],
        ),
        iam.PolicyStatement(
            sid=f"{sid}Metrics" if sid else None, actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker"]}},
        ),
        iam.PolicyStatement(sid=f"{sid}EcrAuth" if sid else None, actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(
            sid=f"{sid}Images" if sid else None,
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[stack.format_arn(service="ecr", resource="repository", resource_name=f"{team}/*"),
                       # AWS Deep Learning Containers (training and inference images) in AWS's registry account.
                       stack.format_arn(service="ecr", account="763104351884", resource="repository", resource_name="*")],
        ),
        iam.PolicyStatement(
            sid=f"{sid}VpcInterfaces" if sid else None,
            actions=["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                     "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
                     "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"],
            resources=["*"],
        ),
    ]


class TeamEnvironment(Construct):
    """One team's scoped slice of the platform.

    :param team_name: the team: 3-22 lowercase letters, digits or hyphens.
    :param cost_centre: tagged as ``team-cost-centre`` on every resource of the team.
    :param lake: the platform's lake (any ``IDataLake``: a ``DataLake`` or ``DataLake.from_lake_attributes``).
    :param read_prefixes: ``<zone>/<prefix>/`` values the team may read. :default: none
    :param write_prefixes: ``<zone>/<prefix>/`` values the team may read and write (never delete). :default: none
    :param admin_principals: who may assume the team role (roles, users). :default: none
    :param admin_principal_patterns: ARN patterns of roles that may assume the team role, for roles whose names
        carry generated parts (IAM Identity Center permission-set roles:
        ``arn:aws:iam::<account>:role/aws-reserved/sso.amazonaws.com/*/AWSReservedSSO_<set>_*``): trusted through
        the account with an ``aws:PrincipalArn`` condition. :default: none. With neither, the team role trusts the
        whole account (its administrators decide) and the construct warns; the platform refuses that in production.
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

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        team_name: str,
        cost_centre: str,
        lake: IDataLake,
        vpc: ec2.IVpc,
        read_prefixes: Sequence[str] = (),
        write_prefixes: Sequence[str] = (),
        admin_principals: Sequence[iam.IPrincipal] = (),
        admin_principal_patterns: Sequence[str] = (),
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
            assumed_by=self._trust(admin_principals, admin_principal_patterns),
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
        # The team's SageMaker work, on resources named <team>-*; Service Catalog as an end user (its own
        # portfolio only: portfolio access is granted per principal) for the team role and, for SageMaker project
        # templates in Studio, the execution role.
        for st in sagemaker_work_statements(stack, team_name):
            self.team_role.add_to_policy(st)
        for role in (self.team_role, self.execution_role):
            for st in service_catalog_end_user_statements():
                role.add_to_policy(st)
        for st in execution_statements(stack, team_name):
            self.execution_role.add_to_policy(st)
        acknowledge(self.team_role, "checkov::CKV_AWS_111", "Service Catalog end-user calls (provision, update, "
                    "terminate) cannot be scoped by resource; portfolio access is granted per principal and provisioned "
                    "products are limited to the same role (servicecatalog:roleLevel)")
        for rule in ("checkov::CKV_AWS_109", "checkov::CKV_AWS_111"):
            acknowledge(self.execution_role, rule, "SageMaker's documented VPC permissions (ENIs and their "
                        "permissions take no resource scoping at creation) and Service Catalog end-user calls for "
                        "Studio project templates (portfolio access is per principal)")

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
                "Wildcards are object keys under the team's own lake prefixes, its own model packages, job "
                "definitions, SageMaker resources named <team>-* and log streams, the S3/KMS action groups of the "
                "lake's prefix-scoped grants, and actions IAM cannot scope (List*, ecr:GetAuthorizationToken, "
                "Service Catalog end-user calls, whose portfolio access is granted per principal)",
                actions=[*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS],
                resources=[*own_objects, f"*:model-package/{self.model_package_group.model_package_group_name}/*",
                           f"*:job-definition/{team_name}-*", f"*/{team_name}-*", f"*:{team_name}-*", "*",
                           "*:log-group:/aws/sagemaker/*", "*:job/*", "*:repository/*"],
            )

    # ------------------------------------------------------------------------------------------
    def _trust(self, principals: Sequence[iam.IPrincipal], patterns: Sequence[str]) -> iam.IPrincipal:
        """Named principals, and ARN patterns through the account with an ``aws:PrincipalArn`` condition; the whole
        account (with a warning) when neither is given."""
        for pattern in patterns:
            if not is_token(pattern) and not _PRINCIPAL_PATTERN_RE.fullmatch(pattern):
                raise ValueError(f"{self.node.path}: admin_principal_patterns must be IAM role ARN patterns "
                                 f"(arn:aws:iam::<account>:role/<path>/<name with *>), got: {pattern!r}")
        trusted: list[iam.IPrincipal] = list(principals)
        if patterns:
            trusted.append(iam.AccountRootPrincipal().with_conditions({"ArnLike": {"aws:PrincipalArn": list(patterns)}}))
        if not trusted:
            cdk.Annotations.of(self).add_warning_v2(
                "mlinfra:team-trusts-account",
                f"The role of team {self.team_name} trusts every principal of the "
                "account allowed to assume it: pass admin_principals or admin_principal_patterns.",
            )
            return iam.AccountRootPrincipal()
        return iam.CompositePrincipal(*trusted) if len(trusted) > 1 else trusted[0]

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
        acknowledge(launch_template, "cfn-guard::ec2_launch_template_monitoring_enabled_check", BATCH_BASIC_MONITORING)
        acknowledge(launch_template, "cfn-guard::ec2_launch_template_token_hop_limit_check", BATCH_HOP_LIMIT)
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
        own_definitions = stack.format_arn(service="batch", resource="job-definition", resource_name=f"{self.team_name}-*")
        self.team_role.add_to_policy(iam.PolicyStatement(
            actions=["batch:SubmitJob"], resources=[self.job_queue.ref, own_definitions],
        ))
        # Its first job must run: the team registers the job definitions it may submit (<team>-*), tagged
        # team=<team> so the jobs it cancels or terminates are its own (tags propagate to jobs).
        self.team_role.add_to_policy(iam.PolicyStatement(
            actions=["batch:RegisterJobDefinition", "batch:TagResource"], resources=[own_definitions],
            conditions={"StringEquals": {"aws:RequestTag/team": self.team_name}},
        ))
        self.team_role.add_to_policy(iam.PolicyStatement(
            actions=["batch:CancelJob", "batch:TerminateJob"],
            resources=[stack.format_arn(service="batch", resource="job", resource_name="*")],
            conditions={"StringEquals": {"aws:ResourceTag/team": self.team_name}},
        ))
        self.team_role.add_to_policy(iam.PolicyStatement(
            actions=["batch:DescribeJobs", "batch:ListJobs", "batch:DescribeJobQueues", "batch:DescribeJobDefinitions"],
            resources=["*"],
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
        own_definitions = stack.format_arn(service="batch", resource="job-definition", resource_name=f"{self.team_name}-*")
        b.add_statements(
            # SageMaker only on the team's own resources (<team>-* names, its model package group): never on
            # another team's jobs, models or endpoints.
            *sagemaker_work_statements(stack, self.team_name, sid="OwnSageMakerResources"),
            # Service Catalog as an end user only: no portfolio, product or constraint administration.
            *service_catalog_end_user_statements(sid="ServiceCatalogEndUser"),
            *execution_statements(stack, self.team_name, sid="RunTimeLogsImagesNetwork"),
            iam.PolicyStatement(
                sid="OwnBatchWork", actions=["batch:RegisterJobDefinition", "batch:TagResource"],
                resources=[own_definitions], conditions={"StringEquals": {"aws:RequestTag/team": self.team_name}},
            ),
            iam.PolicyStatement(
                sid="OwnBatchJobs", actions=["batch:CancelJob", "batch:TerminateJob"],
                resources=[stack.format_arn(service="batch", resource="job", resource_name="*")],
                conditions={"StringEquals": {"aws:ResourceTag/team": self.team_name}},
            ),
            iam.PolicyStatement(
                sid="OwnModelRegistry",
                actions=["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackageGroup", "sagemaker:ListModelPackages",
                         "sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
                resources=[group_arn, package_arn],
            ),
            iam.PolicyStatement(
                sid="BatchReads", actions=["batch:DescribeJobs", "batch:ListJobs", "batch:DescribeJobQueues",
                                           "batch:DescribeJobDefinitions"],
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
            "A permissions boundary is a ceiling, not a grant: wildcards bound the team's own SageMaker resources "
            "(<team>-*), job definitions, log streams and lake prefixes, and the actions IAM cannot scope (List*, "
            "ecr:GetAuthorizationToken, ENIs for VPC jobs, Service Catalog end-user calls)",
            actions=["s3:GetObject*", *KMS_WILDCARD_ACTIONS],
            resources=["*", *[f"*/{prefix}*" for _, prefix in [*reads, *writes]], f"*:job-definition/{self.team_name}-*",
                       f"*:role{path}*", f"*/{self.team_name}-*", f"*:{self.team_name}-*", "*:log-group:/aws/sagemaker/*",
                       "*:job/*", "*:repository/*", f"*:model-package/{self.model_package_group.model_package_group_name}/*"],
        )
        for rule in ("checkov::CKV_AWS_109", "checkov::CKV_AWS_111"):
            acknowledge(b, rule, "A permissions boundary is a ceiling, not a grant. Its unscoped writes are the ENI "
                        "actions SageMaker and Batch need for VPC jobs (no resource scoping at creation) and Service "
                        "Catalog end-user calls (portfolio access is per principal); IAM changes are limited to roles "
                        "under the team's path that carry this boundary")

    def _build_budget(self, amount: float, thresholds: Sequence[int], emails: Sequence[str]) -> None:
        key = kms.Key(self, "AlertKey", enable_key_rotation=True,
                      description=f"Encrypts the budget alert topic of team {self.team_name}")
        limit_grants_to_aws_services(key)
        key.grant_encrypt_decrypt(iam.ServicePrincipal("budgets.amazonaws.com").with_conditions(
            {"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}}))
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
    """The Service Catalog self-service products, one portfolio per team.

    A launch constraint is one role per product per portfolio (Service Catalog admin guide, "Launch constraints"),
    so each team gets its own portfolio whose launch role can act only for that team: pass only the team's
    SageMaker execution role, create and change only resources tagged ``team=<team>`` (SageMaker, KMS, Batch),
    attach queues only to the team's compute environment, and run only Service Catalog stacks (``SC-*``). Each
    portfolio is shared with the team role and, so that its products appear as SageMaker project templates in
    Studio, with the team's execution role (the Studio execution role); each product carries
    ``sagemaker:studio-visibility=true`` and the ``SageMakerProjectName``/``SageMakerProjectId`` parameters.

    :param teams: the vended teams.
    :param display_name: portfolio name prefix. :default: "mlinfra self-service ML"
    :param provider_name: :default: "ML platform team"
    :param endpoint_instance_types: instance types the endpoint product offers, the first is the default.
        :default: ml.m5.xlarge, ml.m5.2xlarge, ml.g5.xlarge, ml.g5.2xlarge
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        teams: Sequence[TeamEnvironment],
        display_name: str = "mlinfra self-service ML",
        provider_name: str = "ML platform team",
        endpoint_instance_types: Sequence[str] = ("ml.m5.xlarge", "ml.m5.2xlarge", "ml.g5.xlarge", "ml.g5.2xlarge"),
    ) -> None:
        super().__init__(scope, id)
        if not teams:
            raise ValueError(f"{self.node.path}: teams must list at least one TeamEnvironment, got: []")
        for instance_type in endpoint_instance_types:
            parse_instance_type(instance_type, "endpoint_instance_types")
        self.portfolios: dict[str, servicecatalog.Portfolio] = {}
        self.launch_roles: dict[str, iam.Role] = {}
        self.products: dict[str, dict[str, servicecatalog.CloudFormationProduct]] = {}
        for team in teams:
            t = team.team_name
            scope_t = Construct(self, t)
            portfolio = servicecatalog.Portfolio(
                scope_t, "Portfolio", display_name=f"{display_name} ({t})"[:100], provider_name=provider_name,
                description=f"Self-service ML products of team {t}, launched under the team's own launch role",
            )
            launch_role = self._launch_role(scope_t, team)
            endpoint = _product(scope_t, "EndpointProduct", f"{t}: SageMaker real-time endpoint", provider_name,
                                f"A SageMaker real-time endpoint of team {t} serving a model artifact from the lake",
                                _EndpointProduct(scope_t, "EndpointProductStack", team=team,
                                                 instance_types=endpoint_instance_types))
            training = _product(scope_t, "TrainingQueueProduct", f"{t}: GPU training queue", provider_name,
                                f"An extra Batch job queue on the GPU compute environment of team {t}",
                                _TrainingQueueProduct(scope_t, "TrainingQueueProductStack", team=team))
            products = {"endpoint": endpoint, "training-queue": training}
            tag_options = servicecatalog.TagOptions(scope_t, "TagOptions", allowed_values_for_tags={
                "team": [t], "team-cost-centre": [team.cost_centre]})
            for product in products.values():
                portfolio.add_product(product)
                portfolio.set_launch_role(product, launch_role)
                cdk.Tags.of(product).add(*STUDIO_VISIBILITY_TAG)
            portfolio.associate_tag_options(tag_options)
            portfolio.give_access_to_role(team.team_role)
            # Studio lists the project templates of the portfolios shared with the user's execution role.
            portfolio.give_access_to_role(team.execution_role)
            self.portfolios[t], self.launch_roles[t], self.products[t] = portfolio, launch_role, products

    @staticmethod
    def _launch_role(scope: Construct, team: TeamEnvironment) -> iam.Role:
        t = team.team_name
        stack = cdk.Stack.of(scope)
        role = iam.Role(
            scope, "LaunchRole",
            assumed_by=iam.ServicePrincipal("servicecatalog.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}}),
            path=f"/mlinfra/launch/{t}/",
            description=f"Service Catalog launch role of team {t}: provisions only that team's products",
        )
        own_tag = {"StringEquals": {"aws:ResourceTag/team": t}}
        new_tag = {"StringEquals": {"aws:RequestTag/team": t}}
        sc_stacks = stack.format_arn(service="cloudformation", resource="stack", resource_name="SC-*")
        statements = [
            iam.PolicyStatement(  # Service Catalog runs each provisioned product as a stack named SC-<account>-pp-<id>
                sid="ServiceCatalogStacks",
                actions=["cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:DeleteStack",
                         "cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents",
                         "cloudformation:DescribeStackResource", "cloudformation:DescribeStackResources",
                         "cloudformation:GetTemplate", "cloudformation:SetStackPolicy"],
                resources=[sc_stacks],
            ),
            iam.PolicyStatement(sid="TemplateChecks", resources=["*"],
                                actions=["cloudformation:GetTemplateSummary", "cloudformation:ValidateTemplate"]),
            iam.PolicyStatement(  # the product templates Service Catalog stores (tagged by the service)
                sid="ProductTemplates", actions=["s3:GetObject"], resources=["*"],
                conditions={"StringEquals": {"s3:ExistingObjectTag/servicecatalog:provisioning": "true"}},
            ),
            iam.PolicyStatement(
                sid="CreateTeamTaggedSageMaker",
                actions=["sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint",
                         "sagemaker:AddTags"],
                resources=[stack.format_arn(service="sagemaker", resource=r, resource_name="*")
                           for r in ("model", "endpoint-config", "endpoint")],
                conditions=new_tag,
            ),
            iam.PolicyStatement(
                sid="ChangeTeamTaggedSageMaker",
                actions=["sagemaker:DeleteModel", "sagemaker:DeleteEndpointConfig", "sagemaker:DeleteEndpoint",
                         "sagemaker:UpdateEndpoint", "sagemaker:DescribeModel", "sagemaker:DescribeEndpointConfig",
                         "sagemaker:DescribeEndpoint", "sagemaker:DeleteTags", "sagemaker:ListTags"],
                resources=[stack.format_arn(service="sagemaker", resource=r, resource_name="*")
                           for r in ("model", "endpoint-config", "endpoint")],
                conditions=own_tag,
            ),
            iam.PolicyStatement(
                sid="PassOnlyTheTeamsExecutionRole", actions=["iam:PassRole"],
                resources=[team.execution_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(  # the endpoint product's volume key, tagged team=<team> at creation
                sid="CreateTeamTaggedKeys", actions=["kms:CreateKey"], resources=["*"], conditions=new_tag,
            ),
            iam.PolicyStatement(
                sid="ManageTeamTaggedKeys",
                actions=["kms:PutKeyPolicy", "kms:EnableKeyRotation", "kms:GetKeyRotationStatus", "kms:GetKeyPolicy",
                         "kms:DescribeKey", "kms:TagResource", "kms:UntagResource", "kms:ListResourceTags",
                         "kms:ScheduleKeyDeletion", "kms:CreateGrant", "kms:Decrypt", "kms:GenerateDataKey"],
                resources=[stack.format_arn(service="kms", resource="key", resource_name="*")],
                conditions=own_tag,
            ),
            iam.PolicyStatement(  # queues only on the team's compute environment
                sid="TeamQueues",
                actions=["batch:CreateJobQueue", "batch:UpdateJobQueue", "batch:DeleteJobQueue", "batch:TagResource"],
                resources=[stack.format_arn(service="batch", resource="job-queue", resource_name="*"),
                           team.compute_environment.ref],
                conditions={"StringEqualsIfExists": {"aws:RequestTag/team": t}},
            ),
            iam.PolicyStatement(sid="BatchReads", resources=["*"],
                                actions=["batch:DescribeJobQueues", "batch:DescribeComputeEnvironments"]),
        ]
        for st in statements:
            role.add_to_policy(st)
        acknowledge_wildcards(
            role,
            f"Team {t}'s launch role: SageMaker, KMS and Batch resources whose names are generated at launch, "
            "allowed only with the team's tag (aws:RequestTag / aws:ResourceTag team), Service Catalog stacks SC-*, "
            "its product templates (s3:ExistingObjectTag servicecatalog:provisioning), template checks and reads "
            "that IAM cannot scope",
            resources=["*", "*:stack/SC-*", "*:model/*", "*:endpoint-config/*", "*:endpoint/*", "*:key/*",
                       "*:job-queue/*"],
        )
        for rule in ("checkov::CKV_AWS_108", "checkov::CKV_AWS_109", "checkov::CKV_AWS_111"):
            acknowledge(role, rule, f"Team {t}'s launch role: s3:GetObject only on objects tagged "
                        "servicecatalog:provisioning (the product templates), kms:CreateKey and SageMaker creates "
                        "only with the team's tag, stacks only SC-*: conditions checkov does not read")
        return role


def _product(scope: Construct, id: str, name: str, owner: str, description: str,
             template: servicecatalog.ProductStack) -> servicecatalog.CloudFormationProduct:
    return servicecatalog.CloudFormationProduct(
        scope, id, product_name=name, owner=owner, description=description,
        product_versions=[servicecatalog.CloudFormationProductVersion(
            product_version_name="v2",
            cloud_formation_template=servicecatalog.CloudFormationTemplate.from_product_stack(template),
        )],
    )


def _launch_suffix(scope: Construct) -> str:
    """The first block of the provisioned stack's UUID: unique per launch, for generated names."""
    return cdk.Fn.select(0, cdk.Fn.split("-", cdk.Fn.select(2, cdk.Fn.split("/", cdk.Aws.STACK_ID))))


class _ProductBase(servicecatalog.ProductStack):
    """A team's product template: the ``SageMakerProjectName``/``SageMakerProjectId`` parameters SageMaker passes to
    project templates, and the team's tags on every resource (the launch role acts only on those)."""

    def __init__(self, scope: Construct, id: str, *, team: TeamEnvironment) -> None:
        super().__init__(scope, id)
        self.project_name = cdk.CfnParameter(
            self, "SageMakerProjectName", type="String", default="standalone", min_length=1, max_length=32,
            allowed_pattern=r"^[a-zA-Z](-*[a-zA-Z0-9])*", description="Set by SageMaker when launched as a project")
        self.project_id = cdk.CfnParameter(self, "SageMakerProjectId", type="String", default="none", max_length=20,
                                           description="Set by SageMaker when launched as a project")
        cdk.Tags.of(self).add("team", team.team_name)
        cdk.Tags.of(self).add("team-cost-centre", team.cost_centre)
        cdk.Tags.of(self).add("project", self.project_name.value_as_string)
        cdk.Tags.of(self).add("project-id", self.project_id.value_as_string)


class _EndpointProduct(_ProductBase):
    """Product template: model + endpoint config (KMS volume key only on EBS-backed types) + endpoint."""

    def __init__(self, scope: Construct, id: str, *, team: TeamEnvironment, instance_types: Sequence[str]) -> None:
        super().__init__(scope, id, team=team)
        t = team.team_name
        image = cdk.CfnParameter(self, "ImageUri", type="String", description="Inference container image (ECR)",
                                 allowed_pattern=r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/.+$")
        model_data = cdk.CfnParameter(self, "ModelDataUrl", type="String", description="s3:// URI of model.tar.gz",
                                      allowed_pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+\.tar\.gz$")
        # Only this team's roles: the launch role may pass nothing else either.
        role = cdk.CfnParameter(self, "ExecutionRoleArn", type="String",
                                description=f"The SageMaker execution role of team {t}",
                                allowed_pattern=rf"^arn:aws[a-z-]*:iam::\d{{12}}:role{re.escape(team_role_path(t))}.+$")
        instance_type = cdk.CfnParameter(self, "InstanceType", type="String", allowed_values=list(instance_types),
                                         default=instance_types[0])
        instance_count = cdk.CfnParameter(self, "InstanceCount", type="Number", default=1, min_value=1, max_value=8)
        local = [i for i in instance_types if family_of(i, "endpoint_instance_types").local_storage]
        # KmsKeyId is refused for instance types with local NVMe storage (their volumes are hardware encrypted).
        ebs_backed = cdk.CfnCondition(self, "EbsBacked", expression=cdk.Fn.condition_not(cdk.Fn.condition_or(
            *[cdk.Fn.condition_equals(instance_type.value_as_string, i) for i in local]))) if local else None
        key = kms.Key(self, "Key", enable_key_rotation=True, pending_window=cdk.Duration.days(7),
                      removal_policy=cdk.RemovalPolicy.DESTROY,
                      description=f"Encrypts the storage volumes of a team {t} endpoint")
        key.grant_encrypt_decrypt(iam.ArnPrincipal(role.value_as_string))
        limit_grants_to_aws_services(key)
        if ebs_backed is not None:
            key.node.default_child.cfn_options.condition = ebs_backed
        model = sagemaker.CfnModel(
            self, "Model", execution_role_arn=role.value_as_string, enable_network_isolation=True,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.value_as_string, model_data_url=model_data.value_as_string),
        )
        config = sagemaker.CfnEndpointConfig(
            self, "EndpointConfig",
            kms_key_id=cdk.Fn.condition_if(ebs_backed.logical_id, key.key_arn, cdk.Aws.NO_VALUE).to_string()
            if ebs_backed is not None else key.key_arn,
            production_variants=[sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name="AllTraffic", model_name=model.attr_model_name,
                initial_instance_count=instance_count.value_as_number, initial_variant_weight=1.0,
                instance_type=instance_type.value_as_string,
            )],
        )
        endpoint = sagemaker.CfnEndpoint(self, "Endpoint", endpoint_config_name=config.attr_endpoint_config_name,
                                         endpoint_name=cdk.Fn.join("-", [t, _launch_suffix(self)]))
        acknowledge(model, "AwsSolutions-SM1", "The product endpoint runs with network isolation; the team "
                    "chooses a VPC-attached variant through the platform's serving construct")
        cdk.CfnOutput(self, "EndpointName", value=endpoint.attr_endpoint_name)


class _TrainingQueueProduct(_ProductBase):
    """Product template: a job queue on the team's compute environment (its ARN is the only allowed value)."""

    def __init__(self, scope: Construct, id: str, *, team: TeamEnvironment) -> None:
        super().__init__(scope, id, team=team)
        ce = cdk.CfnParameter(self, "ComputeEnvironmentArn", type="String",
                              description=f"The Batch compute environment of team {team.team_name}",
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
    too_small = {} if is_token(max_vcpus) else {f: known[f] for f in families if known[f] > max_vcpus}
    if too_small:
        raise ValueError(
            f"max_vcpus is below one instance of an allowed family (smallest size's vCPUs: {too_small}), got: {max_vcpus}"
        )


def _validate_budget(amount: float, thresholds: Sequence[int]) -> None:
    if not is_token(amount) and amount <= 0:
        raise ValueError(f"monthly_budget_usd must be positive, got: {amount}")
    if not thresholds or len(thresholds) > 5 or any(not is_token(t) and not 1 <= t <= 1000 for t in thresholds):
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
