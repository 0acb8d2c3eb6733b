"""Serving smoke check: the endpoints reached InService on the emulator, and their autoscaling is valid.

moto creates the SageMaker model, endpoint config and endpoint through CloudFormation but skips
``AWS::ApplicationAutoScaling::*``. So this check takes the scalable targets, scaling policies and scheduled
actions from the SYNTHESIZED (not rewritten) template, resolves their references to the live endpoint names,
checks that each target names an endpoint and variant that really exist, and registers them through the
Application Auto Scaling API, whose request validation (botocore shapes plus moto's resource-id rules)
shows the policies CloudFormation would create are well formed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ORDER = 40

STACK_SUFFIX = "serving"
_PSEUDO = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


def run(ctx) -> list[str]:
    if not ctx.has_stack(STACK_SUFFIX):
        return []
    outputs = ctx.outputs(STACK_SUFFIX)
    sm = ctx.client("sagemaker")
    lines: list[str] = []

    names = {"real-time": outputs["RealtimeEndpointName"]}
    if "AsyncEndpointName" in outputs:
        names["async"] = outputs["AsyncEndpointName"]
    for kind, name in names.items():
        ep = sm.describe_endpoint(EndpointName=name)
        if ep["EndpointStatus"] != "InService":
            raise AssertionError(f"{kind} endpoint {name} is {ep['EndpointStatus']}, expected InService")
        cfg = sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
        variants = {v["VariantName"]: v for v in cfg["ProductionVariants"]}
        desc = ", ".join(f"{n} on {v.get('InstanceType', 'serverless')} x{v.get('InitialInstanceCount', '-')}"
                         for n, v in variants.items())
        lines.append(f"{kind} endpoint {name}: InService ({desc})")
        if kind == "real-time":
            _check_realtime_config(ctx, cfg, outputs, lines)
        if kind == "async" and not cfg.get("AsyncInferenceConfig", {}).get("OutputConfig", {}).get("S3OutputPath"):
            raise AssertionError(f"async endpoint config {cfg['EndpointConfigName']} has no S3OutputPath")

    template = _synthesized_template(ctx)
    endpoint_names = _live_endpoint_names(ctx)
    lines.extend(register_scaling(ctx.client("application-autoscaling"), template, endpoint_names, sm))
    if "BatchTransformStateMachineArn" in outputs:
        lines.append(_check_batch_transform(ctx, outputs["BatchTransformStateMachineArn"]))
    return lines


def _check_batch_transform(ctx, arn: str) -> str:
    """The batch transform workflow was created and is the poll loop. moto's Step Functions API does not see
    machines created through CloudFormation (another backend), so the definition is read from the deployed
    template; its execution is covered in-process by the unit tests (moto's interpreter, real definition)."""
    cfn = ctx.client("cloudformation")
    stack = ctx.config.stack_name(STACK_SUFFIX)
    machines = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        for r in page["StackResourceSummaries"]:
            if r["ResourceType"] == "AWS::StepFunctions::StateMachine":
                machines[r["PhysicalResourceId"]] = r
    live = machines.get(arn)
    if live is None or not live["ResourceStatus"].endswith("_COMPLETE"):
        raise AssertionError(f"batch transform state machine {arn} was not created by the emulator: {live}")
    body = cfn.get_template(StackName=stack)["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    definition = template["Resources"][live["LogicalResourceId"]]["Properties"]["DefinitionString"]
    text = definition if isinstance(definition, str) else "".join(
        p if isinstance(p, str) else "0" for p in definition["Fn::Join"][1])
    states = json.loads(text).get("States", {})
    if any(str(st.get("Resource", "")).endswith(".sync") for st in states.values()):
        raise AssertionError(f"batch transform {arn} uses a .sync integration the emulator cannot run")
    needed = {"CreateTransformJob", "WaitTransform", "DescribeTransformJob", "NotifyFailure"}
    if not needed <= set(states):
        raise AssertionError(f"batch transform {arn} lacks states {sorted(needed - set(states))}")
    return (f"batch transform workflow {arn.rsplit(':', 1)[-1]}: created, {len(states)} states, poll loop without "
            ".sync (definition read from the deployed template)")


def _check_realtime_config(ctx, cfg: dict[str, Any], outputs: dict[str, str], lines: list[str]) -> None:
    serving = ctx.config.serving
    variant = cfg["ProductionVariants"][0]
    if variant.get("InstanceType") != serving.instance_type:
        raise AssertionError(f"real-time variant runs {variant.get('InstanceType')}, config says {serving.instance_type}")
    if variant["VariantName"] != outputs.get("RealtimeVariantName", variant["VariantName"]):
        raise AssertionError(f"variant {variant['VariantName']} differs from the stack output {outputs['RealtimeVariantName']}")
    capture = cfg.get("DataCaptureConfig") or {}
    if serving.data_capture_percent > 0:
        if capture.get("InitialSamplingPercentage") != serving.data_capture_percent or not capture.get("DestinationS3Uri"):
            raise AssertionError(f"data capture is {capture}, expected {serving.data_capture_percent}% to the lake")
        lines.append(f"data capture: {capture['InitialSamplingPercentage']}% of requests to {capture['DestinationS3Uri']}")


def _synthesized_template(ctx) -> dict[str, Any]:
    """The serving stack's template as synthesized (before the emulator rewrite removed the scaling resources):
    from the deploy's assembly when it can be found, else synthesized in-process from the same config."""
    stack_name = ctx.config.stack_name(STACK_SUFFIX)
    for folder in (getattr(ctx, "assembly_dir", None), Path.cwd() / ".local-aws" / "cdk.out"):
        if folder and (Path(folder) / f"{stack_name}.template.json").is_file():
            return json.loads((Path(folder) / f"{stack_name}.template.json").read_text())
    from mlinfra.app import create_app

    app, _ = create_app(config=ctx.config, nag=False)
    return app.synth().get_stack_by_name(stack_name).template


def _live_endpoint_names(ctx) -> dict[str, str]:
    """Logical id -> name of each SageMaker endpoint the emulator created (its physical id is the ARN)."""
    cfn = ctx.client("cloudformation")
    names = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=ctx.config.stack_name(STACK_SUFFIX)):
        for r in page["StackResourceSummaries"]:
            if r["ResourceType"] == "AWS::SageMaker::Endpoint":
                names[r["LogicalResourceId"]] = r["PhysicalResourceId"].split(":endpoint/", 1)[-1]
    return names


def resolve(value: Any, endpoint_names: dict[str, str], region: str = "us-east-1", account: str = "123456789012") -> Any:
    """Resolve the intrinsics a scaling resource uses (Join, GetAtt of an endpoint's name, pseudo parameters)."""
    if isinstance(value, list):
        return [resolve(v, endpoint_names, region, account) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Fn::Join":
            return arg[0].join(str(resolve(p, endpoint_names, region, account)) for p in arg[1])
        if fn == "Fn::GetAtt" and arg[1] == "EndpointName":
            if arg[0] not in endpoint_names:
                raise AssertionError(f"scaling references endpoint {arg[0]}, which the emulator did not create")
            return endpoint_names[arg[0]]
        if fn == "Ref" and (arg in _PSEUDO or arg in ("AWS::Region", "AWS::AccountId")):
            return {"AWS::Region": region, "AWS::AccountId": account}.get(arg, _PSEUDO.get(arg))
    return {k: resolve(v, endpoint_names, region, account) for k, v in value.items()}


def register_scaling(aas, template: dict[str, Any], endpoint_names: dict[str, str], sagemaker=None) -> list[str]:
    """Register every scalable target, scaling policy and scheduled action of ``template`` through the API."""
    resources = template.get("Resources", {})
    targets = {lid: r for lid, r in resources.items() if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"}
    if not targets:
        raise AssertionError("the serving template has no AWS::ApplicationAutoScaling::ScalableTarget")
    lines = []
    registered: dict[str, dict[str, Any]] = {}
    for lid, res in targets.items():
        p = resolve(res["Properties"], endpoint_names)
        _check_resource_id(p["ResourceId"], sagemaker)
        aas.register_scalable_target(
            ServiceNamespace=p["ServiceNamespace"], ResourceId=p["ResourceId"], ScalableDimension=p["ScalableDimension"],
            MinCapacity=p["MinCapacity"], MaxCapacity=p["MaxCapacity"], RoleARN=p["RoleARN"],
        )
        for action in p.get("ScheduledActions", []):
            kwargs = {k: action[k] for k in ("Schedule", "ScheduledActionName", "ScalableTargetAction") if k in action}
            if "Timezone" in action:
                kwargs["Timezone"] = action["Timezone"]
            aas.put_scheduled_action(ServiceNamespace=p["ServiceNamespace"], ResourceId=p["ResourceId"],
                                     ScalableDimension=p["ScalableDimension"], **kwargs)
        registered[lid] = p
        got = aas.describe_scalable_targets(ServiceNamespace=p["ServiceNamespace"], ResourceIds=[p["ResourceId"]])
        if not got["ScalableTargets"]:
            raise AssertionError(f"scalable target {p['ResourceId']} was not registered")
        lines.append(f"scalable target {p['ResourceId']} ({p['ScalableDimension']}, {p['MinCapacity']}-{p['MaxCapacity']}) "
                     f"registered through the API; {len(p.get('ScheduledActions', []))} scheduled action(s)")
    for lid, res in resources.items():
        if res["Type"] != "AWS::ApplicationAutoScaling::ScalingPolicy":
            continue
        p = resolve(res["Properties"], endpoint_names)
        target_ref = p.get("ScalingTargetId", {}).get("Ref") if isinstance(p.get("ScalingTargetId"), dict) else None
        if target_ref not in registered:
            raise AssertionError(f"scaling policy {lid} does not reference a scalable target of the stack")
        t = registered[target_ref]
        body = {k: p[k] for k in ("TargetTrackingScalingPolicyConfiguration", "StepScalingPolicyConfiguration") if k in p}
        aas.put_scaling_policy(PolicyName=p["PolicyName"], ServiceNamespace=t["ServiceNamespace"],
                               ResourceId=t["ResourceId"], ScalableDimension=t["ScalableDimension"],
                               PolicyType=p["PolicyType"], **body)
        lines.append(f"scaling policy {p['PolicyType']} on {_metric_name(p)} for {t['ResourceId']} put through the API")
    return lines


def _metric_name(p: dict[str, Any]) -> str:
    tt = p.get("TargetTrackingScalingPolicyConfiguration")
    if tt:
        if "PredefinedMetricSpecification" in tt:
            return f"{tt['PredefinedMetricSpecification']['PredefinedMetricType']} (target {tt['TargetValue']})"
        return f"{tt['CustomizedMetricSpecification']['MetricName']} (target {tt['TargetValue']})"
    return "a CloudWatch alarm (step scaling)"


def _check_resource_id(resource_id: str, sagemaker) -> None:
    parts = resource_id.split("/")
    if len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant":
        raise AssertionError(f"resource id must be endpoint/<name>/variant/<variant>, got: {resource_id}")
    if sagemaker is not None:
        variants = [v["VariantName"] for v in sagemaker.describe_endpoint(EndpointName=parts[1])["ProductionVariants"]]
        if parts[3] not in variants:
            raise AssertionError(f"{resource_id}: endpoint {parts[1]} has variants {variants}, not {parts[3]}")
