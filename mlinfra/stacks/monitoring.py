"""MonitoringStack: drift monitoring of the real-time endpoint (issue 15), from ``config.monitoring``.

Stateless: the monitor's workflow, schedule, alarms and dashboard; baselines and reports live in the lake
(artifacts zone: ``baselines/``, ``drift-reports/``). The dashboard shows drift next to the endpoint's
latency and errors. The retrain-on-drift rule lives in the pipeline stack (next to the trigger it invokes),
made by :func:`add_retrain_on_drift`, so that no two stacks reference each other.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from mlinfra.config import PlatformConfig
from mlinfra.constructs.data_lake import IDataLake
from mlinfra.constructs.drift_monitor import BaselineHook, DriftMonitor, retrain_on_drift
from mlinfra.constructs.endpoint import Endpoint
from mlinfra.stacks.base import PlatformStack

#: Prefixes in the lake's artifacts zone (the capture prefix is the serving stack's).
BASELINE_KEY = "baselines/realtime/baseline.json"
REPORT_PREFIX = "drift-reports/"


class MonitoringStack(PlatformStack):
    """Drift monitor of ``endpoint`` with a per-endpoint dashboard; optionally baselines after each retrain run."""

    def __init__(self, scope: Construct, *, config: PlatformConfig, lake: IDataLake, endpoint: Endpoint,
                 capture_prefix: str, pipeline=None) -> None:
        super().__init__(scope, "monitoring", config=config, description="Drift monitoring of the real-time endpoint")
        cfg = config.monitoring
        artifacts = lake.bucket("artifacts")
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=cdk.Duration.days(7))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Endpoint latency p99 (microseconds)", width=12, height=6,
                                   left=[endpoint.metric_model_latency(), endpoint.metric_overhead_latency()]),
            cloudwatch.GraphWidget(title="Endpoint errors", width=12, height=6,
                                   left=[endpoint.metric_4xx_errors(), endpoint.metric_5xx_errors(), endpoint.metric_model_errors()]),
        )
        self.monitor = DriftMonitor(
            self, "RealtimeDrift",
            endpoint_name=endpoint.endpoint_name,
            capture_bucket=artifacts, capture_prefix=capture_prefix,
            baseline_bucket=artifacts, baseline_key=BASELINE_KEY,
            report_prefix=REPORT_PREFIX,
            schedule=scheduler.ScheduleExpression.expression(cfg.schedule),
            window=cdk.Duration.hours(cfg.window_hours),
            thresholds=cfg.thresholds_spec() if (cfg.thresholds or cfg.feature_thresholds) else None,
            ground_truth_prefix=cfg.ground_truth_prefix,
            instance_type=cfg.instance_type,
            dashboard=self.dashboard,
            baseline_hook=BaselineHook(retrain_state_machine=pipeline.state_machine, training_data=lake.bucket("raw"),
                                       lineage_table=pipeline.lineage_table, label_column=cfg.baseline_label_column)
            if pipeline is not None and cfg.baseline_after_retrain else None,
        )
        outputs = {
            "DriftStateMachineArn": self.monitor.state_machine.state_machine_arn,
            "DriftNotificationTopicArn": self.monitor.notification_topic.topic_arn,
            # Keys in the lake's artifacts bucket (the data-lake stack outputs the bucket's name; an output made
            # of another stack's export is what cfn-lint W6001 warns about).
            "BaselineKey": BASELINE_KEY,
            "DriftReportPrefix": REPORT_PREFIX,
            "DriftNamespace": self.monitor.namespace,
        }
        for name, value in outputs.items():
            cdk.CfnOutput(self, name, value=value)


def add_retrain_on_drift(pipeline_stack: cdk.Stack, *, config: PlatformConfig, pipeline, endpoint: Endpoint) -> None:
    """The "Model Drift Detected" -> retrain trigger rule, inside the pipeline stack (see the module docstring)."""
    cfg = config.monitoring
    retrain_on_drift(
        pipeline_stack, "RetrainOnDrift",
        trigger_function=pipeline.trigger_fn.function,
        retrain_state_machine=pipeline.state_machine,
        dataset=cfg.retrain_dataset or config.pipeline.datasets[0],
        endpoint_names=[endpoint.endpoint_name],
        cooldown=cdk.Duration.hours(cfg.cooldown_hours),
        min_interval=cdk.Duration.hours(cfg.min_interval_hours),
        lineage_table=pipeline.lineage_table,
    )
