"""What a retrain pipeline needs to roll a new model out (``deploy_target``, ``deployment_config``)."""

from __future__ import annotations

from typing import Any


from mlinfra.constructs.endpoint_target import EndpointTarget
import aws_cdk as cdk
from aws_cdk import aws_sagemaker as sagemaker

from mlinfra.constructs.endpoint.props import ROLLBACK_ALARMS, TrafficShifting


class _RolloutMixin:
    """What a retrain pipeline needs to roll a new model out (``deploy_target``, ``deployment_config``)."""

    @property
    def deploy_target(self) -> EndpointTarget:
        """What a retrain pipeline needs to roll a new model out to this endpoint's primary variant."""
        v = self.primary_variant
        if v.instance_type is None:
            raise ValueError("deploy_target: serverless endpoints have no instance type; use an instance-backed mode")
        if self.multi_model or self.serial_pipeline:
            raise ValueError(
                f"{self.node.path}: deploy_target: a retrain pipeline rolls out one single-container model; this endpoint "
                f"serves {'a multi-model container' if self.multi_model else 'a serial inference pipeline'}, which the "
                "rollout cannot reproduce")
        pointer = self.model_pointer
        if pointer is None or (v.model is not None and v.model.pointer is None):
            raise ValueError(
                f"{self.node.path}: deploy_target needs the primary variant's model from a ModelPointer "
                "(ModelContainer.from_pointer): with a model declared in the stack, the next cdk deploy would roll the "
                "pipeline's model back (one owner per model, see docs/serving.md)")
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
            model_parameters=pointer.parameter_names,
            model_parameter_arns=pointer.parameter_arns,
            rollback_alarm_arns=self._rollback_alarm_arns(),
            deployment_timeout_seconds=int(self.deployment_guardrails.maximum_execution_timeout.to_seconds())
            if self.deployment_guardrails is not None else None,
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
        rollback = [self._rollback_alarm_name(k) for k in ROLLBACK_ALARMS if k in self.alarms]
        if g.rollback_on_alarms and rollback:
            config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": n} for n in rollback]}
        return config

    def _rollback_alarm_arns(self) -> tuple[str, ...]:
        """ARNs of the auto-rollback alarms, from their literal names (no cross-stack reference to the alarms)."""
        g = self.deployment_guardrails
        if g is None or not g.rollback_on_alarms:
            return ()
        stack = cdk.Stack.of(self)
        return tuple(stack.format_arn(service="cloudwatch", resource="alarm", resource_name=self._rollback_alarm_name(k),
                                      arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
                     for k in ROLLBACK_ALARMS if k in self.alarms)

    def _guard_stack_updates(self) -> None:
        """CloudFormation-driven updates get the same guardrails as the pipeline's: the endpoint resource's
        ``DeploymentConfig`` (blue/green, auto-rollback) and ``RetainAllVariantProperties`` (a stack update keeps
        the current instance count and weights; data capture changes still apply)."""
        config = self.deployment_config
        if config is not None:
            self.endpoint.add_property_override("DeploymentConfig", config)
        if self.primary_variant.instance_type is not None:
            self.endpoint.retain_all_variant_properties = True
            self.endpoint.exclude_retained_variant_properties = [
                sagemaker.CfnEndpoint.VariantPropertyProperty(variant_property_type="DataCaptureConfig")]
