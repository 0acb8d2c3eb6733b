"""Retrain pipeline smoke check: one execution end to end on the emulator, printing each state it passed.

What runs where (the emulator is moto in server mode):
- Step Functions: moto's interpreter executes the DEPLOYED definition (read back from the CloudFormation-created
  state machine and re-created through the API, because CloudFormation-created machines are invisible to
  moto's executor), after ``POST /moto-api/config`` turns execution on.
- SageMaker (processing, training, registry, endpoint) and DynamoDB (the lock) and SNS: real emulator calls
  made by the state machine's aws-sdk / service tasks; moto's SageMaker jobs complete at once.
- Lambda: moto server cannot run Lambda code without Docker. Each Lambda state is answered from moto's
  canned-result queue (``/moto-api/static/lambda-simple/response``), and every queued result is computed by
  running the REAL handler code in-process with boto3 pointed at the emulator (the validation and the
  run-start lineage record really write to the emulator). The final lineage outcome is recorded in-process
  from the execution's real output once it has ended.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ORDER = 50
LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
ACCOUNT = "123456789012"


def _post(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the local emulator's URL
        resp.read()


@contextmanager
def _emulator_env(ctx, extra: dict[str, str] | None = None) -> Iterator[None]:
    """Environment under which in-process handlers' boto3 clients talk to the emulator."""
    env = {"AWS_ENDPOINT_URL": ctx.endpoint_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": ctx.config.region, "AWS_REGION": ctx.config.region, "POWERTOOLS_TRACE_DISABLED": "true",
           "POWERTOOLS_LOG_LEVEL": "ERROR",
           **(extra or {})}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _handler(folder: str):
    spec = importlib.util.spec_from_file_location(f"mlinfra_smoke_{folder}", LAMBDAS / folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Context:
    function_name = "smoke"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:smoke"
    aws_request_id = "smoke"


def _payload(definition: dict, state: str, data: dict[str, Any], execution: dict[str, str]) -> dict[str, Any]:
    """A Lambda state's payload, evaluated from its Parameters against ``data`` (simple JSONPath only)."""

    def value(path: str) -> Any:
        if path.startswith("$$.Execution."):
            return execution[path.removeprefix("$$.Execution.")]
        node: Any = data
        for part in path.removeprefix("$").strip(".").split("."):
            if part:
                node = node[part]
        return node

    def build(params: Any) -> Any:
        if isinstance(params, dict):
            return {k.removesuffix(".$"): value(v) if k.endswith(".$") else build(v) for k, v in params.items()}
        return params

    return build(definition["States"][state]["Parameters"]["Payload"])


def _retarget_endpoint(definition: dict[str, Any]) -> tuple[str, str] | None:
    """Point the deploy states at a fresh ``<endpoint>-smoke-<time>`` endpoint (create path); (old, new) or None."""
    states = definition["States"]
    if "UpdateEndpoint" not in states:
        return None
    old = states["UpdateEndpoint"]["Parameters"]["EndpointName"]
    new = f"smoke-{time.time_ns() // 1_000_000}"
    states["PrepareDeploy"]["Result"]["endpoint_name"] = new
    for state in ("FindEndpoint", "UpdateEndpoint", "CreateEndpoint", "DescribeEndpoint", "GetEndpointFailure"):
        states[state]["Parameters"]["EndpointName"] = new
    return old, new


def run(ctx) -> list[str]:
    if not ctx.has_stack("pipeline"):
        return []
    out = ctx.outputs("pipeline")
    lake = ctx.outputs("data-lake")
    cfg = ctx.config.pipeline
    sfn, s3, sm = ctx.client("stepfunctions"), ctx.client("s3"), ctx.client("sagemaker")
    lines: list[str] = []

    # The deployed (CloudFormation-created) machine lives in moto's plain backend: read it with execution off,
    # then turn execution on (moto then serves its executing backend) and re-create it there.
    _post(f"{ctx.endpoint_url}/moto-api/config", {"stepfunctions": {"execute_state_machine": False}})
    deployed = sfn.describe_state_machine(stateMachineArn=out["StateMachineArn"])
    _post(f"{ctx.endpoint_url}/moto-api/config", MOTO_CONFIG)
    definition_text = deployed["definition"]
    definition = json.loads(definition_text)
    if "${Token[" in definition_text or "Fn::" in definition_text:
        raise AssertionError("the deployed definition still holds unresolved references")
    retargeted = _retarget_endpoint(definition)
    if retargeted:
        definition_text = json.dumps(definition)
        lines.append(f"deploy: moto has no UpdateEndpoint, so the smoke rolls out to a new endpoint {retargeted[1]} through the "
                     f"create path instead of updating {retargeted[0]} (the update path is covered by the workflow tests)")
    name = f"{deployed['name'][:50]}-smoke-{time.time_ns() // 1_000_000}"
    arn = sfn.create_state_machine(name=name, definition=definition_text, roleArn=deployed["roleArn"])["stateMachineArn"]
    lines.append(f"re-created the deployed definition ({len(definition['States'])} states) as {name} for moto's executor")

    group = out["ModelPackageGroupName"]
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except sm.exceptions.ClientError:  # AWS::SageMaker::ModelPackageGroup is skipped by moto's CloudFormation
        sm.create_model_package_group(ModelPackageGroupName=group)
        lines.append(f"model package group {group}: created through the API (moto's CloudFormation skips it)")

    dataset, version, run_id = cfg.datasets[0], time.strftime("smoke-%Y%m%d%H%M%S"), f"smoke-{int(time.time() * 1000)}"
    execution = {"Name": run_id, "Id": f"{arn.replace(':stateMachine:', ':execution:')}:{run_id}", "StartTime": ""}
    s3.put_object(Bucket=lake["RawBucketName"], Key=f"dataset={dataset}/version={version}/part-0.csv", Body=b"x,y\n1,2\n")
    # the landing glue's ready marker (validate trains only on versions the glue declared ready)
    s3.put_object(Bucket=lake["RawBucketName"], Key=f"dataset={dataset}/_ready/{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}_{version}.json",
                  Body=b"{}")
    # A candidate that clears the threshold AND beats the current production model (re-runs included).
    with _emulator_env(ctx):
        baseline, _ = _handler("pipeline_gate").production_model(group, cfg.metric_name)
    step = max(2 * cfg.min_improvement, 0.01)
    if cfg.direction == "higher":
        metric = max(baseline if baseline is not None else float("-inf"), cfg.threshold if cfg.threshold is not None else 0.5) + step
    else:
        metric = min(baseline if baseline is not None else float("inf"), cfg.threshold if cfg.threshold is not None else 1.0) - step
    s3.put_object(Bucket=lake["ArtifactsBucketName"], Key=f"evaluation/{dataset}/{version}/{run_id}/evaluation.json",
                  Body=json.dumps({"metrics": {cfg.metric_name: metric}}).encode())

    # The Lambda results of the happy path, in invocation order, from the real handlers run in-process.
    data: dict[str, Any] = {"dataset": dataset, "version": version, "code_version": "smoke", "trigger": "smoke"}
    results = []
    with _emulator_env(ctx, {"LINEAGE_TABLE": out["LineageTableName"]}):
        validate = _handler("pipeline_validate").handler(_payload(definition, "ValidateInput", data, execution), _Context())
        results.append(validate)
        state = dict(validate)
        results.append(_handler("pipeline_lineage").handler(_payload(definition, "RecordRunStart", state, execution), _Context()))
        evaluation = _handler("pipeline_evaluation").handler(_payload(definition, "ReadEvaluationReport", state, execution), _Context())
        results.append(evaluation)
        job = f"{state['plan']['names']['training_job_base']}-1"
        state["evaluation"] = evaluation
        state["training"] = {"describe": {"TrainingJobArn": f"arn:aws:sagemaker:{ctx.config.region}:{ACCOUNT}:training-job/{job}"}}
        gate = _handler("pipeline_gate").handler(_payload(definition, "CompareMetrics", state, execution), _Context())
        results.append(gate)
        state["gate"] = gate
        results.append({"message": {"subject": "Retrain run succeeded", "status": "Succeeded", "run_id": run_id, "note": "smoke"}})
    if not gate["passed"]:
        raise AssertionError(f"the smoke candidate should pass the gate: {gate['reasons']}")
    _post(f"{ctx.endpoint_url}/moto-api/static/lambda-simple/response",
          {"results": [json.dumps(r) for r in results], "region": ctx.config.region, "account_id": ACCOUNT})
    lines.append(f"queued {len(results)} Lambda results computed by the real handlers in-process (moto server runs no Lambda code)")

    started = sfn.start_execution(stateMachineArn=arn, name=run_id, input=json.dumps(data))["executionArn"]
    deadline = time.monotonic() + 120
    while (desc := sfn.describe_execution(executionArn=started))["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise AssertionError(f"execution {run_id} still running after 120 s")
        time.sleep(0.5)
    events = sfn.get_execution_history(executionArn=started, maxResults=1000)["events"]
    passed = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    lines.append(f"execution {run_id}: {desc['status']} through {len(passed)} states:")
    lines += [f"  {i:2d}. {s}" for i, s in enumerate(passed, 1)]
    if desc["status"] != "SUCCEEDED" or passed[-1] != "Succeeded":
        failures = [{k: v for k, v in e.items() if k.endswith("EventDetails")} for e in events if e["type"].endswith("Failed")]
        if os.environ.get("MLINFRA_SMOKE_DEBUG"):
            for e in events[-12:]:
                print(e["type"], {k: v for k, v in e.items() if k.endswith("EventDetails")})
        raise AssertionError(f"execution {run_id} ended {desc['status']} after {passed}: {desc.get('error')} {desc.get('cause')}; "
                             f"first failure: {failures[:1]}")

    final = json.loads(desc.get("output") or "{}")
    with _emulator_env(ctx, {"LINEAGE_TABLE": out["LineageTableName"]}):
        _handler("pipeline_lineage").handler({"action": "outcome", "status": "Succeeded", "state": final,
                                              "execution": {"name": run_id, "id": started}}, _Context())
    packages = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    approved = [p for p in packages if p["ModelApprovalStatus"] == "Approved"]
    if not approved:
        raise AssertionError(f"no Approved model package in {group} after the run: {packages}")
    job = sm.describe_training_job(TrainingJobName=f"{final['plan']['names']['training_job_base']}-1")
    lines.append(f"training job {job['TrainingJobName']}: spot={job['EnableManagedSpotTraining']}, "
                 f"checkpoints {job['CheckpointConfig']['S3Uri']}, max wait {job['StoppingCondition'].get('MaxWaitTimeInSeconds')} s")
    lines.append(f"model package {approved[-1]['ModelPackageArn']} Approved; lineage outcome recorded in {out['LineageTableName']}")
    if retargeted:
        endpoint = sm.describe_endpoint(EndpointName=retargeted[1])
        if endpoint["EndpointConfigName"] != final["plan"]["names"]["endpoint_config"]:
            raise AssertionError(f"endpoint {retargeted[1]} serves {endpoint['EndpointConfigName']}, not the new model's config")
        lines.append(f"endpoint {retargeted[1]}: {endpoint['EndpointStatus']} on {endpoint['EndpointConfigName']}")
    elif "CreateEndpoint" not in passed:
        lines.append("deploy: no endpoint target in this environment (register and approve only)")
    return lines
