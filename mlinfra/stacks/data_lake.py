"""DataLakeStack: the stateful half of the platform (zone buckets, key, catalog). Everything RETAINED."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from mlinfra.config import ZONES, PlatformConfig
from mlinfra.constructs.common import data_destruction_allowed
from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.endpoint import ModelPointer
from mlinfra.stacks.base import PlatformStack


class DataLakeStack(PlatformStack):
    def __init__(self, scope: Construct, *, config: PlatformConfig) -> None:
        super().__init__(scope, "data-lake", config=config, description="Data lake zones, key and Glue catalog")
        lake_cfg = config.data_lake
        destroy = config.destroy_data_on_delete
        self.lake = DataLake(
            self,
            "DataLake",
            encryption=lake_cfg.encryption,
            lifecycle=lake_cfg.lifecycle,
            glue_zones=lake_cfg.glue_zones,
            access_log_retention_days=lake_cfg.access_log_retention_days,
            destroy_data_on_delete=destroy,
            # Emptying buckets on delete is a Lambda-backed custom resource: the local emulator cannot run it
            # (no Docker), and its in-memory state disappears with the server anyway.
            auto_delete_objects=destroy and config.target == "aws" and data_destruction_allowed(self),
            transfer_acceleration=lake_cfg.landing_transfer_acceleration,
            name_prefix=f"{config.prefix}_{config.env_name}",
        )
        for zone in ZONES:
            cdk.CfnOutput(self, f"{zone.title()}BucketName", value=self.lake.bucket(zone).bucket_name)
        if self.lake.encryption_key is not None:
            cdk.CfnOutput(self, "LakeKeyArn", value=self.lake.encryption_key.key_arn)
        # The served model's pointer is state (the retrain pipeline writes it after each rollout): it lives here,
        # deployed before the serving stack that resolves it (docs/serving.md, "Who owns the model").
        self.model_pointer: ModelPointer | None = None
        if config.serving.enabled:
            self.model_pointer = ModelPointer(
                self, "ServedModel", parameter_prefix=f"/{config.prefix}/{config.env_name}/serving/realtime",
                image_uri=config.serving.image_uri, model_bucket=self.lake.bucket("models"),
                model_data_key=config.serving.model_data_key)

