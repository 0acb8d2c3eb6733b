"""The base of every mlinfra stack: environment, naming and termination protection from the config."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from mlinfra.config import PlatformConfig


class PlatformStack(cdk.Stack):
    """A stack of one platform environment, named ``<prefix>-<env>-<suffix>``.

    Production stacks get termination protection. The stack's description names the environment.
    """

    def __init__(self, scope: Construct, suffix: str, *, config: PlatformConfig, description: str) -> None:
        env = cdk.Environment(account=config.account, region=config.region) if config.account else None
        super().__init__(
            scope,
            config.stack_name(suffix),
            # Explicit, so a stack keeps its name inside a pipeline Stage (which would prefix the stage's name):
            # a laptop deploy and the pipeline's deploy target the same CloudFormation stack.
            stack_name=config.stack_name(suffix),
            env=env,
            description=f"mlinfra {config.env_name}: {description}",
            termination_protection=config.is_production,
        )
        self.config = config
