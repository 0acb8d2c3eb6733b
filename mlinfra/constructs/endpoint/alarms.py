"""The endpoint's alarms and their topic."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns

from mlinfra.constructs.common import alarm_principal
from mlinfra.domain import instances
from mlinfra.domain.hosting_instances import family_of
from mlinfra.constructs.endpoint.props import ROLLBACK_ALARMS, EndpointAlarms, ProductionVariant


class _AlarmsMixin:
    """The endpoint's alarms and their topic."""

    def _make_topic(self) -> sns.Topic:
        topic = sns.Topic(self, "AlarmTopic", master_key=self.encryption_key, enforce_ssl=True,
                          display_name="SageMaker endpoint alarms")
        if isinstance(self.encryption_key, kms.Key):
            self.encryption_key.add_to_resource_policy(iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[alarm_principal()],  # this account's alarms only (confused deputy)
                resources=["*"],
            ))
        return topic

    def _make_alarms(self, a: EndpointAlarms) -> None:
        common = dict(evaluation_periods=a.evaluation_periods, datapoints_to_alarm=a.datapoints_to_alarm,
                      comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                      treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        primary = self.primary_variant.name
        instance_backed = self.primary_variant.instance_type is not None
        specs: list[tuple[str, Any, float, str]] = []
        if a.error_5xx_rate_percent is not None:
            specs.append(("Errors5xx", self.error_rate("5xx"), a.error_5xx_rate_percent,
                          f"5XX errors above {a.error_5xx_rate_percent}% of invocations"))
        if a.error_4xx_rate_percent is not None:
            specs.append(("Errors4xx", self.error_rate("4xx"), a.error_4xx_rate_percent,
                          f"4XX errors above {a.error_4xx_rate_percent}% of invocations"))
        if a.latency_p99_ms is not None:
            # ModelLatency is in MICROseconds.
            specs.append(("LatencyP99", self.metric_model_latency(period=a.period), a.latency_p99_ms * 1000.0,
                          f"ModelLatency p99 above {a.latency_p99_ms} ms ({a.latency_p99_ms * 1000:g} us)"))
        if instance_backed:
            if a.disk_utilization_percent is not None:
                specs.append(("DiskUtilization", self.metric_disk_utilization(period=a.period), a.disk_utilization_percent,
                              f"Disk utilization above {a.disk_utilization_percent}%"))
            if a.memory_utilization_percent is not None:
                specs.append(("MemoryUtilization", self.metric_memory_utilization(period=a.period),
                              a.memory_utilization_percent, f"Memory utilization above {a.memory_utilization_percent}%"))
            if a.gpu_memory_utilization_percent is not None and self._is_gpu(self.primary_variant):
                # GPUMemoryUtilization is SUMMED over the instance's GPUs (0-400 % on 4 GPUs): the threshold, per
                # GPU in the props, scales with the GPU count of the instance table.
                gpus = self._gpus(self.primary_variant)
                specs.append(("GpuMemoryUtilization", self.metric_gpu_memory_utilization(period=a.period),
                              a.gpu_memory_utilization_percent * gpus,
                              f"GPU memory utilization above {a.gpu_memory_utilization_percent}% per GPU "
                              f"({a.gpu_memory_utilization_percent * gpus:g}% summed over {gpus} GPU(s))"))
        action = cw_actions.SnsAction(self.alarm_topic)
        for name, metric, threshold, desc in specs:
            alarm = cloudwatch.Alarm(self, f"{name}Alarm", metric=metric, threshold=threshold,
                                     alarm_name=self._rollback_alarm_name(name),
                                     alarm_description=f"{desc} (variant {primary})", **common)
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[name] = alarm
        if a.invocations_zero:
            alarm = cloudwatch.Alarm(
                self, "NoInvocationsAlarm", metric=self.metric_invocations(period=cdk.Duration.minutes(5)), threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=3, datapoints_to_alarm=3, treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
                alarm_description=f"No invocations for 15 minutes (variant {primary})",
            )
            alarm.add_alarm_action(action)
            self.alarms["NoInvocations"] = alarm

    @staticmethod
    def _is_gpu(v: ProductionVariant) -> bool:
        return v.instance_type is not None and family_of(v.instance_type).accelerator == "gpu"

    def _rollback_alarm_name(self, name: str) -> str | None:
        """A literal name for the alarms auto-rollback watches: the endpoint resource's own ``DeploymentConfig``
        names them, and a ``Ref`` would make a cycle (the alarms' metrics name the endpoint)."""
        if name not in ROLLBACK_ALARMS:
            return None
        return f"{cdk.Names.unique_resource_name(self, max_length=200, separator='-')}-{name}"

    def _gpus(self, v: ProductionVariant) -> int:
        """GPUs per instance of ``v`` (1, with a warning, for a type the accelerator table lacks)."""
        # SageMaker's GPUUtilization and GPUMemoryUtilization are SUMMED over the instance's GPUs (0-400 % on 4).
        try:
            gpus = instances.gpu_count(str(v.instance_type).removeprefix("ml."))
        except instances.InstanceTypeError:
            gpus = None
        if gpus is None:
            cdk.Annotations.of(self).add_warning_v2(
                "mlinfra:endpoint-gpu-count",
                f"{v.instance_type}: GPU count unknown (not in the accelerator table); GPU thresholds assume 1 GPU")
            return 1
        return gpus
