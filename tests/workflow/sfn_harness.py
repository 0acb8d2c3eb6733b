"""Run a synthesized state machine in moto's Step Functions interpreter with the REAL handler code.

1. :class:`TemplateResolver` resolves ``Ref``/``Fn::GetAtt``/``Fn::Join``/``Fn::Select``/``Fn::Split``/pseudo
   parameters of a synthesized template, creating the referenced resources in moto on demand (Lambda
   functions, DynamoDB tables, SNS topics, S3 buckets, IAM roles, KMS keys).
2. :func:`state_machine_definition` substitutes a state machine's ``DefinitionSubstitutions`` into its
   ``DefinitionString``: the definition as CloudFormation would deploy it.
3. :func:`real_lambdas` patches moto's Docker-less Lambda backend (``LambdaSimpleBackend.invoke``, used when
   ``config={"lambda": {"use_docker": False}}``) so invoking a created function imports and runs its handler
   from ``mlinfra/lambdas/<folder>/handler.py`` in-process, with the function's (resolved) environment.
   A raised exception becomes an ``Unhandled`` function error with ``errorType``/``errorMessage``, as in AWS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import boto3

LAMBDAS = Path(__file__).resolve().parents[2] / "mlinfra" / "lambdas"
ACCOUNT, REGION = "123456789012", "us-east-1"
_ENV_LOCK = threading.Lock()


class TemplateResolver:
    def __init__(self, template: dict[str, Any]) -> None:
        self.resources = template["Resources"]
        self.values: dict[str, dict[str, str]] = {}
        self.functions: dict[str, dict[str, Any]] = {}  # function name -> {"folder", "environment"}
        self._role_arn: str | None = None

    # -- intrinsic functions ---------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.ensure(logical)[attr]
            if key == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self.resolve(p)) for p in self.resolve(parts))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
        return {k: self.resolve(v) for k, v in value.items()}

    def ref(self, name: str) -> str:
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
                  "AWS::StackName": "TestStack"}
        if name in pseudo:
            return pseudo[name]
        return self.ensure(name)["Ref"]

    # -- resources, created in moto on first reference ----------------------------------------------------
    def role_arn(self) -> str:
        if self._role_arn is None:
            self._role_arn = boto3.client("iam").create_role(RoleName="harness-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        return self._role_arn

    def ensure(self, logical: str) -> dict[str, str]:
        if logical in self.values:
            return self.values[logical]
        res = self.resources[logical]
        kind, props = res["Type"], res.get("Properties", {})
        name = re.sub(r"[^A-Za-z0-9-]", "", logical)[:60]
        if kind == "AWS::Lambda::Function":
            env = props.get("Environment", {}).get("Variables", {})
            self.values[logical] = {}  # break reference cycles while resolving the environment
            resolved_env = {k: str(self.resolve(v)) for k, v in env.items()}
            folder = resolved_env["POWERTOOLS_SERVICE_NAME"].removeprefix("mlinfra-").replace("-", "_")
            arn = boto3.client("lambda").create_function(
                FunctionName=name, Runtime="python3.12", Role=self.role_arn(), Handler="handler.handler", Code={"ZipFile": b"0"}
            )["FunctionArn"]
            self.functions[name] = {"folder": folder, "environment": resolved_env}
            out = {"Ref": name, "Arn": arn}
        elif kind == "AWS::DynamoDB::Table":
            boto3.client("dynamodb").create_table(
                TableName=name, KeySchema=props["KeySchema"], AttributeDefinitions=props["AttributeDefinitions"], BillingMode="PAY_PER_REQUEST")
            out = {"Ref": name, "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"}
        elif kind == "AWS::SNS::Topic":
            arn = boto3.client("sns").create_topic(Name=name)["TopicArn"]
            out = {"Ref": arn, "TopicName": name, "TopicArn": arn}
        elif kind == "AWS::S3::Bucket":
            bucket = name.lower()
            boto3.client("s3").create_bucket(Bucket=bucket)
            out = {"Ref": bucket, "Arn": f"arn:aws:s3:::{bucket}"}
        elif kind == "AWS::IAM::Role":
            arn = boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            out = {"Ref": name, "Arn": arn}
        elif kind == "AWS::KMS::Key":
            key = boto3.client("kms").create_key()["KeyMetadata"]
            out = {"Ref": key["KeyId"], "Arn": key["Arn"]}
        elif kind == "AWS::SageMaker::ModelPackageGroup":
            group = props["ModelPackageGroupName"]
            arn = boto3.client("sagemaker").create_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
            out = {"Ref": group, "ModelPackageGroupArn": arn}
        elif kind == "AWS::SQS::Queue":
            url = boto3.client("sqs").create_queue(QueueName=name)["QueueUrl"]
            out = {"Ref": url, "QueueUrl": url, "QueueName": name, "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"}
        elif kind == "AWS::SageMaker::Cluster":
            # The definition only names the cluster (in lineage); the job runs through its bridge's queue.
            out = {"ClusterArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:cluster/{name.lower()}"}
        else:
            raise NotImplementedError(f"the harness cannot create {kind} ({logical})")
        self.values[logical] = out
        return out

    def logical_ids(self, kind: str) -> list[str]:
        return [k for k, r in self.resources.items() if r["Type"] == kind]


def state_machine_definition(resolver: TemplateResolver, logical: str) -> str:
    props = resolver.resources[logical]["Properties"]
    text = resolver.resolve(props["DefinitionString"])
    for key, value in (props.get("DefinitionSubstitutions") or {}).items():
        text = text.replace("${" + key + "}", str(resolver.resolve(value)))
    leftover = re.findall(r"\$\{[A-Za-z0-9]+\}", text)
    assert not leftover, f"unresolved substitutions: {leftover}"
    return text


def load_handler(folder: str):
    spec = importlib.util.spec_from_file_location(f"mlinfra_lambda_{folder}", LAMBDAS / folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Context:
    memory_limit_in_mb = 512
    aws_request_id = "harness"

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


@contextmanager
def real_lambdas(resolver: TemplateResolver) -> Iterator[list[dict[str, Any]]]:
    """Patch moto so invoking a harness-created function runs its real handler; yields the invocation log."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    modules: dict[str, Any] = {}
    calls: list[dict[str, Any]] = []

    def invoke(self, function_name, qualifier, body, headers, response_headers):  # noqa: ARG001 - moto's signature
        name = function_name.split(":function:")[-1].split(":")[0]
        spec = resolver.functions[name]
        module = modules.setdefault(spec["folder"], load_handler(spec["folder"]))
        event = json.loads(body) if body else {}
        with _ENV_LOCK, mock.patch.dict(os.environ, spec["environment"]):
            try:
                result = module.handler(event, _Context(name))
                calls.append({"function": spec["folder"], "event": event, "result": result})
                return json.dumps(result).encode()
            except Exception as exc:  # reported to Step Functions as the function's error, as Lambda does
                calls.append({"function": spec["folder"], "event": event, "error": repr(exc)})
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()

    with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
        yield calls


def run_execution(sfn, state_machine_arn: str, name: str, payload: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Start, wait for the end, and return describe_execution plus ``states`` (the states entered, in order)."""
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + timeout
    while (result := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"execution {name} still running after {timeout} s"
        time.sleep(0.1)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    result["states"] = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    result["events"] = events
    return result
