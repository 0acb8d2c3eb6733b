"""What a retrain pipeline needs to roll a new model out (``deploy_target``, ``deployment_config``)."""

from __future__ import annotations

from typing import Any


from mlinfra.constructs.endpoint_target import EndpointTarget
from mlinfra.constructs.endpoint.props import TrafficShifting


class _RolloutMixin:
    """What a retrain pipeline needs to roll a new model out (``deploy_target``, ``deployment_config``)."""

    @property
    def deploy_target(self) -> EndpointTarget:
        """What a retrain pipeline needs to roll a new model out to this endpoint's primary variant."""
        v = self.primary_variant
        if v.instance_type is None:
            raise ValueError("deploy_target: serverless endpoints have no instance type; use an instance-backed mode")
        return EndpointTarget(
            endpoint_name=self.endpoint_name,
            endpoint_arn=self.endpoint_arn,
            variant_name=v.name,
            instance_type=v.instance_type,
            initial_instance_count=v.initial_instance_count,
            model_execution_role=self.role,
            deployment_config=self.deployment_config,
            kms_key=self.encryption_key if self.volume_key_applied else None,
            vpc_config=self.vpc_config,
            enable_network_isolation=self.network_isolation,
        )

    @property
    def deployment_config(self) -> dict[str, Any] | None:
        """``UpdateEndpoint``'s ``DeploymentConfig`` (PascalCase), or None for an all-at-once update."""
        g = self.deployment_guardrails
        if g is None:
            return None
        routing: dict[str, Any] = {"Type": g.traffic_shifting.value, "WaitIntervalInSeconds": int(g.wait_interval.to_seconds())}
        if g.traffic_shifting is TrafficShifting.CANARY:
            routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": g.canary_percent}
        elif g.traffic_shifting is TrafficShifting.LINEAR:
            routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": g.linear_step_percent}
        config: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                "TerminationWaitInSeconds": int(g.termination_wait.to_seconds()),
                "MaximumExecutionTimeoutInSeconds": int(g.maximum_execution_timeout.to_seconds()),
            }
        }
        rollback = [self.alarms[k] for k in ("Errors5xx", "LatencyP99") if k in self.alarms]
        if g.rollback_on_alarms and rollback:
            config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a.alarm_name} for a in rollback]}
        return config
