"""Compose the whole platform from one validated configuration.

Stateful stacks (the lake) are apart from stateless ones (network, compute, pipelines, serving), so a
stateless stack can be destroyed and redeployed without touching data. Cross-stack handles are typed
(a bucket, a VPC), never names copied by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aws_cdk as cdk
from constructs import Construct

from mlinfra.config import PlatformConfig
from mlinfra.constructs.common import apply_platform_tags
from mlinfra.stacks.data_lake import DataLakeStack
from mlinfra.stacks.network import NetworkStack


@dataclass
class Platform:
    """The stacks of one environment, by role."""

    config: PlatformConfig
    network: NetworkStack
    data_lake: DataLakeStack
    extra: dict[str, cdk.Stack] = field(default_factory=dict)

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [self.network, self.data_lake, *self.extra.values()]


def build_platform(scope: Construct, config: PlatformConfig) -> Platform:
    """Create every stack of ``config``'s environment under ``scope`` (an App or a Stage)."""
    if config.account:
        # Pin the AZs so synth needs no lookup (and the local emulator gets real zone names).
        scope.node.set_context(f"availability-zones:account={config.account}:region={config.region}", config.azs)
    network = NetworkStack(scope, config=config)
    data_lake = DataLakeStack(scope, config=config)
    platform = Platform(config=config, network=network, data_lake=data_lake)

    # --- ingestion (issue 3) ---
    if config.ingestion.enabled:
        from mlinfra.stacks.ingestion import IngestionStack

        platform.extra["ingestion"] = IngestionStack(
            scope, config=config, lake=data_lake.lake, network=network.network
        )

    # --- training (issue 4) ---
    if config.training.enabled:
        from mlinfra.stacks.training import TrainingStack

        platform.extra["training"] = TrainingStack(
            scope, config=config, network=network.network, lake=data_lake.lake
        )

    # --- serving (issue 6) ---
    if config.serving.enabled:
        from mlinfra.stacks.serving import ServingStack

        platform.extra["serving"] = ServingStack(
            scope, config=config, lake=data_lake.lake, network=network.network, model_pointer=data_lake.model_pointer
        )

    # --- retrain pipeline (issue 5) ---
    if config.pipeline.enabled:
        from mlinfra.stacks.pipeline import PipelineStack

        serving = platform.extra.get("serving")
        endpoint = getattr(serving, "realtime_endpoint", None)
        target = endpoint.deploy_target if endpoint is not None else None
        platform.extra["pipeline"] = PipelineStack(scope, config=config, lake=data_lake.lake, deploy_target=target)

    # --- drift monitoring (issue 15) ---
    if config.monitoring.enabled and "serving" in platform.extra:
        from mlinfra.stacks.monitoring import MonitoringStack, add_retrain_on_drift
        from mlinfra.stacks.serving import CAPTURE_PREFIX

        endpoint = platform.extra["serving"].realtime_endpoint
        pipeline_stack = platform.extra.get("pipeline")
        pipeline = getattr(pipeline_stack, "pipeline", None)
        platform.extra["monitoring"] = MonitoringStack(
            scope, config=config, lake=data_lake.lake, endpoint=endpoint, capture_prefix=CAPTURE_PREFIX,
            pipeline=pipeline)
        if pipeline is not None and config.monitoring.retrain_on_drift:
            add_retrain_on_drift(pipeline_stack, config=config, pipeline=pipeline, endpoint=endpoint)

    # --- delivery and teams (issue 8) ---
    from mlinfra.stacks.teams import build_teams

    platform.extra.update(build_teams(scope, config, data_lake.lake, network.network))
    if config.delivery.github is not None:
        from mlinfra.stacks.delivery import GithubDeployStack

        platform.extra["github-deploy"] = GithubDeployStack(scope, config=config)
    # The pipeline is built at the app level only: its stages call build_platform again (no pipeline inside),
    # and never for the local emulator (CodePipeline and CodeBuild are not emulated).
    if config.delivery.enabled and config.target == "aws" and cdk.App.is_app(scope):
        from mlinfra.stacks.delivery import DeliveryPipelineStack, load_stage_configs

        platform.extra["delivery"] = DeliveryPipelineStack(
            scope, config=config, stage_configs=load_stage_configs(scope, config), build_stage=build_platform
        )

    apply_platform_tags(scope, config.all_tags)
    return platform
