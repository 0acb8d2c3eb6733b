"""PipelineStack: the retrain pipeline (issue 5), stateless except its lineage table (RETAINED)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from mlinfra.config import PlatformConfig
from mlinfra.constructs.common import acknowledge
from mlinfra.constructs.data_lake import IDataLake
from mlinfra.constructs.endpoint_target import EndpointTarget
from mlinfra.constructs.retrain_pipeline import JobWait, MetricDirection, ProcessingProps, RetrainPipeline, TrainingProps
from mlinfra.stacks.base import PlatformStack


def model_package_group_name(config: PlatformConfig) -> str:
    """The reference platform's model registry: the retrain pipeline registers into it, batch transform scores
    with its newest Approved version (a literal, so the serving stack names it without a cross-stack reference)."""
    return config.resource_name("models")


class PipelineStack(PlatformStack):
    """The reference platform's retrain pipeline, from ``config.pipeline``.

    :param lake: the data lake (input, checkpoints, reports, models).
    :param deploy_target: the endpoint new models roll out to. :default: None (register and approve only)
    """

    def __init__(self, scope: Construct, *, config: PlatformConfig, lake: IDataLake, deploy_target: EndpointTarget | None = None) -> None:
        super().__init__(scope, "pipeline", config=config, description="Retrain pipeline (Step Functions, SageMaker, registry)")
        cfg = config.pipeline
        training = TrainingProps(
            image_uri=cfg.training_image,
            instance_type=cfg.training_instance_type,
            instance_count=cfg.training_instance_count,
            volume_size_gb=cfg.training_volume_gb,
            max_runtime=cdk.Duration.hours(cfg.max_runtime_hours),
            use_spot=cfg.use_spot,
            max_wait=cdk.Duration.hours(cfg.max_wait_hours) if cfg.max_wait_hours else None,
            hyperparameters=dict(cfg.hyperparameters),
            max_attempts=cfg.max_training_attempts,
        )
        # Production logs errors only (execution data can hold dataset names and metrics); elsewhere everything.
        log_level = sfn.LogLevel.ERROR if config.is_production else sfn.LogLevel.ALL
        self.pipeline = RetrainPipeline(
            self,
            "RetrainPipeline",
            lake=lake,
            training=training,
            datasets=cfg.datasets,
            metric_name=cfg.metric_name,
            direction=MetricDirection(cfg.direction),
            threshold=cfg.threshold,
            min_improvement=cfg.min_improvement,
            schedule=events.Schedule.expression(cfg.schedule) if cfg.schedule else None,
            # Deploying needs a serving image: the serving config's image unless the pipeline names one.
            inference_image_uri=cfg.inference_image or (config.serving.image_uri if deploy_target is not None else None),
            preprocessing=ProcessingProps(image_uri=cfg.preprocessing_image) if cfg.preprocessing_image else None,
            evaluation=ProcessingProps(image_uri=cfg.evaluation_image) if cfg.evaluation_image else None,
            manual_approval=cfg.manual_approval,
            approval_timeout=cdk.Duration.hours(cfg.approval_timeout_hours),
            deploy_target=deploy_target,
            model_package_group_name=model_package_group_name(config),
            state_machine_name=config.resource_name("retrain"),
            poll_interval=cdk.Duration.seconds(cfg.poll_interval_seconds),
            log_level=log_level,
            log_retention_days=cfg.log_retention_days,
            job_prefix=f"{config.prefix}-{config.env_name}"[:20].rstrip("-"),
            destroy_data_on_delete=config.destroy_data_on_delete,
            # moto's Step Functions interpreter cannot run .sync integrations: the emulator polls.
            job_wait=JobWait.POLL if config.target == "local" else JobWait.SYNC,
        )
        if log_level != sfn.LogLevel.ALL:
            acknowledge(self.pipeline.state_machine, "AwsSolutions-SF1",
                        "Production logs ERROR level only (issue 5): execution data of every state would copy dataset "
                        "names, metrics and task tokens into logs; X-Ray tracing and the lineage table record each run.")
        p = self.pipeline
        if p.approval_topic is not None:
            # Reviewers only: the approval request carries the task token (never sent to the failure topic).
            for email in cfg.approval_emails:
                p.approval_topic.add_subscription(subs.EmailSubscription(email))
        outputs = {
            "StateMachineArn": p.state_machine.state_machine_arn,
            "StateMachineName": p.state_machine_name,
            "LineageTableName": p.lineage_table.table_name,
            "NotificationTopicArn": p.topic.topic_arn,
            "ModelPackageGroupName": p.model_package_group_name,
            "ApprovalFunctionName": p.approval_fn.function.function_name,
            **({"ApprovalUrl": p.approval_url.url} if p.approval_url is not None else {}),
            **({"ApprovalTopicArn": p.approval_topic.topic_arn} if p.approval_topic is not None else {}),
            "TriggerFunctionName": p.trigger_fn.function.function_name,
            "ExecutionLogGroup": p.log_group.log_group_name,
        }
        for name, value in outputs.items():
            cdk.CfnOutput(self, name, value=value)
