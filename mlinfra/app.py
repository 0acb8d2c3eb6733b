"""Build the reference platform app: one validated configuration, every stack, cdk-nag registered.

Used by ``app.py`` (the CDK entry point), the tests and the ``mlinfra`` CLI, so all three synthesize the
same thing. Context keys (``-c key=value`` or ``cdk.json``):

- ``mlinfra:env``: the environment to build. :default: local
- ``mlinfra:config``: the configuration file. :default: config/platform.yaml
- ``mlinfra:nag``: register cdk-nag AwsSolutions checks. :default: true
- ``mlinfra:guard``: register cfn-guard with the AWS Control Tower proactive-control rules
  (``cdklabs.cdk-validator-cfnguard``, a dev dependency). :default: false (``make synth``, ``make lint`` and the policy
  test turn it on: it adds about 18 s to a synth of the reference app, so plain ``cdk synth`` and the local deploy skip it)
- ``mlinfra:allowDataDestruction``: second key for deleting data (see DataLake). :default: false
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import aws_cdk as cdk

from mlinfra.config import PlatformConfig, load_config_file
from mlinfra.stacks.platform import Platform, build_platform

#: aws-cdk-lib feature flags the constructs rely on; applied under any context the caller gives, so an app
#: synthesized by ``cdk``, by a test or by the CLI behaves the same.
FEATURE_FLAGS: dict[str, Any] = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-s3:createDefaultLoggingPolicy": True,
    "@aws-cdk/aws-ec2:restrictDefaultSecurityGroup": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/aws-kms:aliasNameRef": True,
    "@aws-cdk/aws-lambda:recognizeLayerVersion": True,
    "@aws-cdk/core:target-partitions": ["aws"],
}

DEFAULT_CONFIG = "config/platform.yaml"
DEFAULT_ENV = "local"


def register_nag(app: cdk.App) -> None:
    """Register cdk-nag's AwsSolutions pack through the v3 Validations API."""
    from cdk_nag import AwsSolutionsChecks

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def register_guard(app: cdk.App) -> None:
    """Register cfn-guard with the AWS Control Tower proactive-control rules (``cdk-validator-cfnguard``, which
    bundles the binary and the rules) as a CDK policy-validation plugin: it checks every stack of the app and of
    its nested stages (the delivery pipeline's) at synth, and an unacknowledged finding fails the synth.
    Acknowledge an accepted finding next to its resource with
    ``mlinfra.constructs.common.acknowledge(resource, "cfn-guard::<rule>", reason)``."""
    from cdklabs.cdk_validator_cfnguard import CfnGuardValidator

    cdk.Validations.of(app).add_plugins(CfnGuardValidator(control_tower_rules_enabled=True))


def create_app(
    *,
    config: PlatformConfig | None = None,
    env_name: str | None = None,
    config_path: str | Path | None = None,
    context: Mapping[str, Any] | None = None,
    outdir: str | None = None,
    nag: bool | None = None,
    validation: bool | None = None,
    guard: bool | None = None,
) -> tuple[cdk.App, Platform]:
    """Create the CDK app and every stack of one environment.

    Explicit arguments win over context values. Built-in CloudFormation validation follows ``validation``
    when given, else the ``CDK_VALIDATION`` environment variable (``false`` in unit tests).
    """
    extra = {} if validation is None else {"builtin_cloud_formation_validation": validation}
    app = cdk.App(context={**FEATURE_FLAGS, **dict(context or {})}, outdir=outdir, **extra)
    if config is None:
        env_name = env_name or app.node.try_get_context("mlinfra:env") or DEFAULT_ENV
        config_path = config_path or app.node.try_get_context("mlinfra:config") or DEFAULT_CONFIG
        config = load_config_file(config_path, env_name)
    if nag is None:
        nag = str(app.node.try_get_context("mlinfra:nag") or "true").lower() != "false"
    if nag:
        register_nag(app)
    if guard is None:
        guard = str(app.node.try_get_context("mlinfra:guard") or "false").lower() == "true"
    if guard:
        register_guard(app)
    platform = build_platform(app, config)
    return app, platform
