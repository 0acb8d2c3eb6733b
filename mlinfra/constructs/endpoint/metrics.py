"""The endpoint's CloudWatch metrics (``metric_*``) and derived error rates."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch

from mlinfra.constructs.endpoint.props import NS_INVOCATIONS, NS_INSTANCE, _label


class _MetricsMixin:
    """The endpoint's CloudWatch metrics (``metric_*``) and derived error rates."""

    def metric(self, metric_name: str, *, variant: str | None = None, namespace: str = NS_INVOCATIONS,
               statistic: str = "Sum", **kwargs: Any) -> cloudwatch.Metric:
        """A metric of this endpoint (and variant: the primary one unless given)."""
        dims = {"EndpointName": self.endpoint_name, "VariantName": variant or self.primary_variant.name}
        return cloudwatch.Metric(namespace=namespace, metric_name=metric_name, dimensions_map=dims,
                                 statistic=statistic, **{"period": cdk.Duration.minutes(1), **kwargs})

    def metric_invocations(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("Invocations", **kw)

    def metric_invocations_per_instance(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("InvocationsPerInstance", **kw)

    def metric_model_latency(self, statistic: str = "p99", **kw: Any) -> cloudwatch.Metric:
        """ModelLatency in MICROseconds."""
        return self.metric("ModelLatency", statistic=statistic, **kw)

    def metric_overhead_latency(self, statistic: str = "p99", **kw: Any) -> cloudwatch.Metric:
        """OverheadLatency in MICROseconds."""
        return self.metric("OverheadLatency", statistic=statistic, **kw)

    def metric_4xx_errors(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("Invocation4XXErrors", **kw)

    def metric_5xx_errors(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("Invocation5XXErrors", **kw)

    def metric_model_errors(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("InvocationModelErrors", **kw)

    def metric_cpu_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("CPUUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_memory_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("MemoryUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_disk_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("DiskUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_gpu_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("GPUUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_gpu_memory_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("GPUMemoryUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_backlog_per_instance(self, **kw: Any) -> cloudwatch.Metric:
        """Async only: ``ApproximateBacklogSizePerInstance`` (dimension EndpointName)."""
        return cloudwatch.Metric(namespace=NS_INVOCATIONS, metric_name="ApproximateBacklogSizePerInstance",
                                 dimensions_map={"EndpointName": self.endpoint_name}, statistic="Average",
                                 **{"period": cdk.Duration.minutes(1), **kw})

    def metric_has_backlog_without_capacity(self, **kw: Any) -> cloudwatch.Metric:
        """Async only: ``HasBacklogWithoutCapacity`` (1 when requests wait and no instance runs)."""
        return cloudwatch.Metric(namespace=NS_INVOCATIONS, metric_name="HasBacklogWithoutCapacity",
                                 dimensions_map={"EndpointName": self.endpoint_name}, statistic="Average",
                                 **{"period": cdk.Duration.minutes(1), **kw})

    def metric_instance_count(self, variant: str | None = None) -> cloudwatch.MathExpression:
        """Serving instances, derived as Invocations / InvocationsPerInstance (SageMaker publishes no count)."""
        sfx = _label(variant or self.primary_variant.name).lower()
        return cloudwatch.MathExpression(
            expression=f"IF(perinst{sfx} > 0, inv{sfx} / perinst{sfx}, 0)",
            using_metrics={f"inv{sfx}": self.metric_invocations(variant=variant),
                           f"perinst{sfx}": self.metric_invocations_per_instance(variant=variant)},
            label=f"Instances {variant or self.primary_variant.name} (derived)", period=cdk.Duration.minutes(1),
        )

    def error_rate(self, kind: str, variant: str | None = None) -> cloudwatch.MathExpression:
        """``kind`` ("4xx" or "5xx") errors as a percentage of invocations."""
        errors = self.metric_5xx_errors(variant=variant) if kind == "5xx" else self.metric_4xx_errors(variant=variant)
        sfx = kind.lower() + _label(variant or self.primary_variant.name).lower()
        return cloudwatch.MathExpression(
            expression=f"IF(inv{sfx} > 0, 100 * err{sfx} / inv{sfx}, 0)",
            using_metrics={f"err{sfx}": errors, f"inv{sfx}": self.metric_invocations(variant=variant)},
            label=f"{kind.upper()} error rate (%)", period=cdk.Duration.minutes(1),
        )
