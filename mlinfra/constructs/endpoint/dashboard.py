"""The endpoint's CloudWatch dashboard."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch

from mlinfra.constructs.endpoint.props import EndpointMode


class _DashboardMixin:
    """The endpoint's CloudWatch dashboard."""

    def _make_dashboard(self) -> cloudwatch.Dashboard:
        board = cloudwatch.Dashboard(self, "Dashboard", default_interval=cdk.Duration.hours(3))
        names = [v.name for v in self.variants]
        w, h = 12, 6
        board.add_widgets(
            cloudwatch.GraphWidget(title="Invocations", width=w, height=h,
                                   left=[self.metric_invocations(variant=n, label=n) for n in names]),
            cloudwatch.GraphWidget(title="Invocations per instance", width=w, height=h,
                                   left=[self.metric_invocations_per_instance(variant=n, label=n) for n in names]),
        )
        board.add_widgets(
            cloudwatch.GraphWidget(
                title="Latency (microseconds)", width=w, height=h,
                left=[self.metric_model_latency(statistic=s, label=f"ModelLatency {s}") for s in ("p50", "p90", "p99")]
                + [self.metric_overhead_latency(label="OverheadLatency p99")],
            ),
            cloudwatch.GraphWidget(title="Errors", width=w, height=h,
                                   left=[self.metric_4xx_errors(label="4XX"), self.metric_5xx_errors(label="5XX"),
                                         self.metric_model_errors(label="Model errors")],
                                   right=[self.error_rate("5xx"), self.error_rate("4xx")]),
        )
        if self.primary_variant.instance_type is not None:
            util = [self.metric_cpu_utilization(label="CPU"), self.metric_memory_utilization(label="Memory"),
                    self.metric_disk_utilization(label="Disk")]
            if self._is_gpu(self.primary_variant):
                util += [self.metric_gpu_utilization(label="GPU"), self.metric_gpu_memory_utilization(label="GPU memory")]
            count: list[cloudwatch.IMetric] = [self.metric_instance_count(variant=n) for n in names]
            if self.mode is EndpointMode.ASYNC:
                count += [self.metric_backlog_per_instance(label="Backlog per instance")]
            board.add_widgets(
                cloudwatch.GraphWidget(title="Instance count", width=w, height=h, left=count),
                cloudwatch.GraphWidget(title="Utilization (%)", width=w, height=h, left=util),
            )
        if self.alarms:
            board.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", width=24, height=3,
                                                           alarms=list(self.alarms.values())))
        return board
