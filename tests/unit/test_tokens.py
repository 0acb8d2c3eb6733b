"""Tokens in validation: one token case per construct (DESIGN.md, "Examples to follow" 11).

Every numeric or ``Duration`` prop a construct validates is given an unresolved token (a CloudFormation
parameter): where the value goes straight into a resource property, the construct synthesizes and the template
references the parameter; where the construct computes with the value at synth time, it refuses the token with a
message naming the prop (``must be a literal value``), never ``got: -1.888e+289``. Every message starts with the
construct's path.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from tests.helpers import new_stack

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1.0"
TRAIN_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1.0"


class Params:
    """Fresh CloudFormation parameters of one stack, as number and Duration tokens; remembers their names."""

    def __init__(self, stack: cdk.Stack) -> None:
        self.stack = stack
        self.names: list[str] = []

    def num(self, name: str) -> Any:
        self.names.append(name)
        return cdk.CfnParameter(self.stack, name, type="Number").value_as_number

    def seconds(self, name: str) -> cdk.Duration:
        return cdk.Duration.seconds(self.num(name))

    def text(self, name: str) -> str:
        self.names.append(name)
        return cdk.CfnParameter(self.stack, name).value_as_string


def _refs(template: dict[str, Any]) -> set[str]:
    """Every ``Ref`` target of the template, including those inside Fn::Join/Sub strings of definitions."""
    text = json.dumps({k: v for k, v in template.items() if k != "Parameters"})
    found = set()
    for name in [p for p in template.get("Parameters", {})]:
        if f'{{"Ref": "{name}"}}' in text or f"${{{name}}}" in text:
            found.add(name)
    return found


# --- builders: each takes (stack, params) and builds one construct with tokens wherever tokens are legal -------


def _endpoint(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs.endpoint import (AutoScaling, DeploymentGuardrails, Endpoint, EndpointAlarms, ModelContainer,
                                             ModelData, ProductionVariant)

    bucket = s3.Bucket(stack, "Models")
    Endpoint(
        stack, "Endpoint",
        model=ModelContainer(image_uri=IMAGE, model_data=ModelData.from_bucket(bucket, "m/model.tar.gz")),
        variants=[ProductionVariant(instance_type="ml.m5.large", initial_instance_count=p.num("Count"),
                                    volume_size_gb=p.num("Volume"),
                                    model_data_download_timeout=p.seconds("Download"),
                                    startup_health_check_timeout=p.seconds("Startup"))],
        auto_scaling=AutoScaling(min_capacity=p.num("MinCapacity"), max_capacity=p.num("MaxCapacity"),
                                 target_value=p.num("Target"), scale_in_cooldown=p.seconds("ScaleIn"),
                                 scale_out_cooldown=p.seconds("ScaleOut")),
        # The case: a token wait_interval in the guardrails.
        deployment_guardrails=DeploymentGuardrails(canary_percent=p.num("Canary"), wait_interval=p.seconds("Wait"),
                                                   termination_wait=p.seconds("Termination"),
                                                   maximum_execution_timeout=p.seconds("MaxRollout")),
        alarms=EndpointAlarms(error_5xx_rate_percent=p.num("Err5xx"), error_4xx_rate_percent=p.num("Err4xx"),
                              disk_utilization_percent=p.num("Disk"), memory_utilization_percent=p.num("Memory"),
                              evaluation_periods=p.num("Periods"), datapoints_to_alarm=p.num("Datapoints")),
    )


BUILDERS: dict[str, Callable[[cdk.Stack, Params], None]] = {
    "Endpoint": _endpoint,
}


@pytest.mark.parametrize("construct", sorted(BUILDERS))
def test_token_props_synthesize_and_reach_the_template(construct: str) -> None:
    stack = new_stack()
    params = Params(stack)
    BUILDERS[construct](stack, params)
    template = Template.from_stack(stack).to_json()
    missing = sorted(set(params.names) - _refs(template))
    assert not missing, f"{construct}: token props that never reach the template: {missing}"
