"""Continuous delivery of the platform.

``DeliveryPipelineStack``: a self-mutating CDK Pipeline (``aws_cdk.pipelines.CodePipeline``, pipeline type
V2) that reads the app's source from a CodeConnections connection (GitHub, GitLab, Bitbucket) or an S3
object, runs the app's tests (unit and policy tests, so cdk-nag), ``cdk synth`` (cdk-nag again on every
stack) and cfn-lint on every template, then deploys one ``PlatformStage`` per environment in the configured
order (dev, then prod), with a manual approval before every production stage. Artifacts are encrypted with a
rotated KMS key (``cross_account_keys``) so stages can deploy into other accounts.

Cross-account targets must trust the pipeline's account once, from a laptop with admin credentials::

    cdk bootstrap aws://<target-account>/<region> --trust <pipeline-account> \\
        --trust-for-lookup <pipeline-account> \\
        --cloudformation-execution-policies arn:aws:iam::aws:policy/AdministratorAccess

``GithubDeployStack``: the ``GithubOidcDeployRole`` of one environment, for GitHub Actions users.
"""

from __future__ import annotations

from typing import Callable, Sequence

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import pipelines
from constructs import Construct

from mlinfra.config import DeliveryConfig, PlatformConfig, validate_prod_approval
from mlinfra.constructs.common import (acknowledge, acknowledge_access_log_destination, limit_grants_to_aws_services,
                                       encrypted_log_group)
from mlinfra.constructs.github_oidc import GithubOidcDeployRole
from mlinfra.constructs.wildcards import acknowledge_wildcards
from mlinfra.stacks.base import PlatformStack

__all__ = ["DeliveryPipelineStack", "GithubDeployStack", "PlatformStage", "StageBuilder", "bootstrap_commands"]

#: Builds every stack of one environment inside a stage: ``build(stage, config)``. The platform passes its
#: ``build_platform``, so this module never imports the platform that composes it (no import cycle).
StageBuilder = Callable[[Construct, PlatformConfig], object]


#: Wildcard actions of the policies CDK Pipelines generates (artifact bucket and key grants).
PIPELINE_WILDCARD_ACTIONS: tuple[str, ...] = (
    "s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:Abort*", "s3:DeleteObject*", "kms:GenerateDataKey*", "kms:ReEncrypt*",
)
#: Wildcard resources of those policies, as glob patterns over cdk-nag's rendering.
PIPELINE_WILDCARD_RESOURCES: tuple[str, ...] = (
    "<PipelineArtifactsBucket*.Arn>/*",  # objects of the pipeline's own artifact bucket
    "arn:*:iam::*:role/*",  # self-mutation: sts:AssumeRole only on roles tagged aws-cdk:bootstrap-role
    "arn:<AWS::Partition>:codebuild:*:report-group/*",  # CodeBuild test reports of the pipeline's projects
    "arn:<AWS::Partition>:logs:*:log-group:/aws/codebuild/*",  # CodeBuild log groups of the pipeline's projects
    "*",  # cloudformation:DescribeStacks / s3:ListBucket (self-mutation) and codebuild:StartBuild (asset roles)
)


class PlatformStage(cdk.Stage):
    """Every stack of one environment, as a deployable unit of the pipeline.

    :param config: the environment the stage deploys.
    :param build: builds the environment's stacks inside the stage (the platform's ``build_platform``).
    """

    def __init__(self, scope: Construct, id: str, *, config: PlatformConfig, build: StageBuilder) -> None:
        env = cdk.Environment(account=config.account, region=config.region) if config.account else None
        super().__init__(scope, id, env=env)
        self.platform = build(self, config)


def bootstrap_commands(pipeline_config: PlatformConfig, stage_configs: Sequence[PlatformConfig]) -> list[str]:
    """The ``cdk bootstrap`` commands the pipeline needs: its own account, and each target trusting it."""
    home = pipeline_config.account or "<pipeline-account>"
    cmds = [f"cdk bootstrap aws://{home}/{pipeline_config.region}"]
    for cfg in stage_configs:
        target = cfg.account or "<account>"
        if target == home and cfg.region == pipeline_config.region:
            continue
        cmds.append(
            f"cdk bootstrap aws://{target}/{cfg.region} --trust {home} --trust-for-lookup {home} "
            "--cloudformation-execution-policies arn:aws:iam::aws:policy/AdministratorAccess"
        )
    return cmds


def synth_commands(config: PlatformConfig, delivery: DeliveryConfig) -> list[str]:
    """Tests (including the cdk-nag policy test), then ``cdk synth`` (cdk-nag on), then cfn-lint."""
    return [
        *delivery.test_commands,
        f"npx cdk synth --all --quiet -c mlinfra:env={config.env_name} -c mlinfra:config={delivery.config_file} -o cdk.out",
        "cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json cdk.out/assembly-*/*.template.json",
    ]


class DeliveryPipelineStack(PlatformStack):
    """``<prefix>-<env>-delivery``: the self-mutating pipeline deploying ``stage_configs`` in order.

    :param config: the environment the pipeline itself lives in (its ``delivery`` section drives the pipeline).
    :param stage_configs: the environments to deploy, in the order of ``config.delivery.stages``.
    :param build_stage: builds one environment's stacks inside its stage (the platform's ``build_platform``).
    """

    def __init__(self, scope: Construct, *, config: PlatformConfig, stage_configs: Sequence[PlatformConfig],
                 build_stage: StageBuilder) -> None:
        super().__init__(scope, "delivery", config=config, description="Self-mutating CDK pipeline (dev, then prod)")
        delivery = config.delivery
        _validate(delivery, stage_configs)
        self.stage_configs = list(stage_configs)

        if delivery.source == "s3":
            bucket = s3.Bucket.from_bucket_name(self, "SourceBucket", delivery.source_bucket)
            source = pipelines.CodePipelineSource.s3(bucket, delivery.source_object_key)
        else:
            source = pipelines.CodePipelineSource.connection(
                delivery.repository, delivery.branch, connection_arn=delivery.connection_arn,
            )
        self.synth_step = pipelines.ShellStep(
            "Synth",
            input=source,
            install_commands=list(delivery.install_commands),
            commands=synth_commands(config, delivery),
            primary_output_directory="cdk.out",
            env={"CDK_VALIDATION": "true", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"},
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=config.resource_name("delivery"),
            synth=self.synth_step,
            self_mutation=True,
            pipeline_type=codepipeline.PipelineType.V2,
            cross_account_keys=True,
            enable_key_rotation=True,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                    compute_type=codebuild.ComputeType.MEDIUM,
                ),
                timeout=cdk.Duration.minutes(60),
                # Every project (synth, self-mutation, asset publishing) logs to one encrypted, retained group.
                logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(
                    log_group=self._build_log_group())),
            ),
        )
        self.stages: dict[str, PlatformStage] = {}
        for cfg in self.stage_configs:
            stage = PlatformStage(self, _stage_id(cfg.env_name), config=cfg, build=build_stage)
            pre = []
            if cfg.env_name in delivery.approval_before:
                pre.append(pipelines.ManualApprovalStep(
                    f"Approve-{cfg.env_name}",
                    comment=f"Promote to {cfg.env_name} (account {cfg.account or 'default'}): review the dev deploy first",
                ))
            self.pipeline.add_stage(stage, pre=pre)
            self.stages[cfg.env_name] = stage
        self.pipeline.build_pipeline()
        self._harden_artifacts(config)
        self._acknowledge()
        # cfn-lint E3703 ("prefer Fn::Sub over Fn::Join") flags the deploy actions' role ARNs, which CDK Pipelines
        # writes as Fn::Join; the template is generated by aws-cdk-lib and valid CloudFormation.
        self.pipeline.pipeline.node.default_child.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E3703"]}})
        self.bootstrap_commands = bootstrap_commands(config, self.stage_configs)
        cdk.CfnOutput(self, "PipelineName", value=self.pipeline.pipeline.pipeline_name)
        cdk.CfnOutput(self, "BootstrapCommands", value=" && ".join(self.bootstrap_commands))

    def _build_log_group(self) -> logs.ILogGroup:
        key = kms.Key(self, "BuildLogKey", enable_key_rotation=True, description="Encrypts the pipeline's build logs")
        limit_grants_to_aws_services(key)
        return encrypted_log_group(self, "BuildLogs", key=key, retention=logs.RetentionDays.ONE_YEAR,
                                   removal_policy=cdk.RemovalPolicy.RETAIN)

    def _harden_artifacts(self, config: PlatformConfig) -> None:
        """The generated artifact bucket, versioned, access-logged and expiring old artifacts (the L2 pipeline
        exposes no props for those, so they are set on its CloudFormation resource)."""
        bucket = self.pipeline.pipeline.artifact_bucket
        self.artifact_access_logs = s3.Bucket(
            self, "ArtifactAccessLogs", encryption=s3.BucketEncryption.S3_MANAGED,  # access logs: SSE-S3 only
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=cdk.Duration.days(365),
                                              noncurrent_version_expiration=cdk.Duration.days(30))],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        acknowledge_access_log_destination(self.artifact_access_logs)
        cfn: s3.CfnBucket = bucket.node.default_child
        cfn.versioning_configuration = s3.CfnBucket.VersioningConfigurationProperty(status="Enabled")
        cfn.logging_configuration = s3.CfnBucket.LoggingConfigurationProperty(
            destination_bucket_name=self.artifact_access_logs.bucket_name, log_file_prefix="artifacts/")
        cfn.lifecycle_configuration = s3.CfnBucket.LifecycleConfigurationProperty(rules=[s3.CfnBucket.RuleProperty(
            id="expire-old-artifacts", status="Enabled", expiration_in_days=90,
            noncurrent_version_expiration=s3.CfnBucket.NoncurrentVersionExpirationProperty(noncurrent_days=30),
            abort_incomplete_multipart_upload=s3.CfnBucket.AbortIncompleteMultipartUploadProperty(days_after_initiation=7),
        )])
        # S3 delivers server access logs through a bucket policy on the destination (logging service principal).
        self.artifact_access_logs.add_to_resource_policy(iam.PolicyStatement(
            sid="S3ServerAccessLogsPolicy", principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
            actions=["s3:PutObject"], resources=[self.artifact_access_logs.arn_for_objects("artifacts/*")],
            conditions={"ArnLike": {"aws:SourceArn": bucket.bucket_arn},
                        "StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}},
        ))
        for rule, reason in (
            ("cfn-guard::s3_bucket_object_lock_enabled_check", "Build artifacts are rebuilt from source on every run; "
             "WORM retention would only stop their expiry"),
            ("cfn-guard::s3_event_notifications_enabled_check", "CodePipeline itself consumes the artifacts; nothing "
             "else is notified of them"),
        ):
            acknowledge(bucket, rule, reason)
            acknowledge(self.artifact_access_logs, rule, reason)
        key = self.pipeline.pipeline.node.try_find_child("ArtifactsBucketEncryptionKey")
        if key is not None:
            limit_grants_to_aws_services(key)

    def _acknowledge(self) -> None:
        assets = self.pipeline.node.try_find_child("Assets")
        file_role = assets.node.try_find_child("FileRole") if assets is not None else None
        if file_role is not None:
            acknowledge(file_role, "checkov::CKV_AWS_111", "CDK Pipelines' asset publishing role: codebuild:StartBuild/"
                        "StopBuild/BatchGetBuilds on the pipeline's own asset projects, which CDK names at synth and "
                        "cannot list in the policy")
        for node in self.pipeline.node.find_all():
            if isinstance(node, iam.Policy):
                acknowledge_wildcards(
                    node,
                    "CDK Pipelines generates these policies: CodeBuild log groups and reports named per build, "
                    "artifact objects under the pipeline's own bucket and key, and the CDK bootstrap roles",
                    actions=PIPELINE_WILDCARD_ACTIONS,
                    resources=PIPELINE_WILDCARD_RESOURCES,
                )
        for node in self.pipeline.node.find_all():
            if isinstance(node, codebuild.Project):
                acknowledge(node, "AwsSolutions-CB4", "CDK Pipelines encrypts CodeBuild artifacts with the "
                            "pipeline's rotated KMS artifact key")


class GithubDeployStack(PlatformStack):
    """``<prefix>-<env>-github-deploy``: GitHub Actions' OIDC deploy role (and pull-request diff role)."""

    def __init__(self, scope: Construct, *, config: PlatformConfig) -> None:
        super().__init__(scope, "github-deploy", config=config, description="GitHub Actions OIDC deploy role")
        gh = config.delivery.github
        assert gh is not None
        self.deploy_role = GithubOidcDeployRole(
            self,
            "GithubOidc",
            repository=gh.repository,
            branch=gh.branch,
            environment=gh.environment,
            provider_arn=gh.provider_arn,
            role_name=config.resource_name("github-deploy"),
            pull_request_diff=True,
            diff_role_name=config.resource_name("github-diff"),
            diff_workflow=gh.diff_workflow,
            diff_stack_names=[config.resource_name("*")],
        )
        cdk.CfnOutput(self, "DeployRoleArn", value=self.deploy_role.role.role_arn)
        if self.deploy_role.diff_role is not None:
            cdk.CfnOutput(self, "DiffRoleArn", value=self.deploy_role.diff_role.role_arn)


def load_stage_configs(scope: Construct, config: PlatformConfig) -> list[PlatformConfig]:
    """The configurations of ``config.delivery.stages``, read from ``delivery.config_file`` (relative to the
    app directory; the ``mlinfra:config`` context value wins when set). The pipeline's own environment is
    reused as is."""
    from mlinfra.config import load_config_file

    path = scope.node.try_get_context("mlinfra:config") or config.delivery.config_file
    return [config if env == config.env_name else load_config_file(path, env) for env in config.delivery.stages]


def _stage_id(env_name: str) -> str:
    return env_name[:1].upper() + env_name[1:]


def _validate(delivery: DeliveryConfig, stage_configs: Sequence[PlatformConfig]) -> None:
    if not stage_configs:
        raise ValueError("stage_configs must list at least one environment to deploy, got: []")
    names = [c.env_name for c in stage_configs]
    if len(set(names)) != len(names):
        raise ValueError(f"stage_configs must be distinct environments, got: {names}")
    errors = validate_prod_approval(names, list(delivery.approval_before), "approval_before")
    prod_like = [c.env_name for c in stage_configs if c.is_production and c.env_name not in delivery.approval_before]
    if prod_like and not errors:
        errors = [f"approval_before: production stage(s) {prod_like} need a manual approval before them, "
                  f"got: {list(delivery.approval_before)}"]
    if errors:
        raise ValueError(errors[0])
    local = [c.env_name for c in stage_configs if c.target == "local"]
    if local:
        raise ValueError(f"stage_configs: a pipeline deploys to AWS, not to the local emulator, got: {local}")
