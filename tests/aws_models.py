"""Check what our state machines send against the AWS service models botocore ships (offline).

- :func:`task_request_errors`: every Task state's ``Parameters`` against the input shape of the API it calls
  (``aws-sdk:<service>:<action>`` and the optimized integrations): unknown members, missing required members,
  wrong types, enum values, lengths and ranges of the LITERAL values. A ``Key.$`` member (a path or intrinsic,
  resolved at run time) must be a member of the shape; its value is not checked. Step Functions serialises an
  object given for Lambda's ``Payload`` and SNS's ``Message`` itself.
- :func:`error_name_errors`: every ``ErrorEquals`` name of a Retry/Catch. Step Functions names a service error
  ``<Service>.<ErrorName>`` with the ``Exception`` suffix always added ("Learning to use AWS service SDK
  integrations in Step Functions", error names); the name must be one of the service model's error shapes, or
  the SDK's generic exception of the service (what Step Functions reports for errors the model does not list,
  e.g. throttling: ``SageMaker.AmazonSageMakerException``), or one of the Lambda names AWS documents for
  transient Lambda errors. A name no error can carry makes a Retry that never retries.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

from mlinfra.domain.api_model import operation_input, service_model, shape_errors

#: Step Functions' service prefix -> botocore service name.
SERVICES = {"SageMaker": "sagemaker", "DynamoDB": "dynamodb", "SNS": "sns", "SSM": "ssm", "Lambda": "lambda",
            "SQS": "sqs", "EventBridge": "events", "S3": "s3", "States": "stepfunctions"}
#: The SDK's generic exception per service (errors the model does not list arrive under this name).
GENERIC = {"SageMaker": "AmazonSageMakerException", "DynamoDB": "AmazonDynamoDBException", "SNS": "AmazonSNSException",
           "SSM": "AWSSimpleSystemsManagementException", "Lambda": "AWSLambdaException"}
#: Step Functions docs, "Handling transient Lambda service exceptions": the retry list AWS recommends.
LAMBDA_DOCUMENTED = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                     "Lambda.TooManyRequestsException"}
#: Optimized integrations (no aws-sdk prefix): resource -> (botocore service, operation).
OPTIMIZED = {
    "arn:aws:states:::lambda:invoke": ("lambda", "Invoke"),
    "arn:aws:states:::dynamodb:putItem": ("dynamodb", "PutItem"),
    "arn:aws:states:::dynamodb:deleteItem": ("dynamodb", "DeleteItem"),
    "arn:aws:states:::dynamodb:getItem": ("dynamodb", "GetItem"),
    "arn:aws:states:::dynamodb:updateItem": ("dynamodb", "UpdateItem"),
    "arn:aws:states:::sns:publish": ("sns", "Publish"),
    "arn:aws:states:::sns:publish.waitForTaskToken": ("sns", "Publish"),
    "arn:aws:states:::sagemaker:createTrainingJob.sync": ("sagemaker", "CreateTrainingJob"),
    "arn:aws:states:::sagemaker:createProcessingJob.sync": ("sagemaker", "CreateProcessingJob"),
    "arn:aws:states:::sagemaker:createTransformJob.sync": ("sagemaker", "CreateTransformJob"),
}
#: Members Step Functions serialises from an object (botocore types them blob/string).
SERIALISED = {("lambda", "Invoke", "Payload"), ("sns", "Publish", "Message")}


def operation_of(resource: str) -> tuple[str, str]:
    """(botocore service, operation name) a Task resource calls; a KeyError/ValueError for an unknown one."""
    resource = re.sub(r"^arn:[^:]+:states:", "arn:aws:states:", resource)  # CDK writes the partition as a reference
    if resource in OPTIMIZED:
        return OPTIMIZED[resource]
    prefix = "arn:aws:states:::aws-sdk:"
    if not resource.startswith(prefix):
        raise ValueError(f"unknown integration {resource!r}")
    service, action = resource[len(prefix):].split(".")[0].split(":")
    model = service_model(service)
    name = action[:1].upper() + action[1:]
    if name not in model.operation_names:
        raise ValueError(f"{service} has no API action {name!r} (from {resource!r})")
    return service, name


def _sample(shape) -> Any:
    """A minimal value of ``shape`` standing in for a run-time path value (its errors are ignored)."""
    t = shape.type_name
    if t == "structure":
        return {m: _sample(shape.members[m]) for m in shape.required_members}
    if t == "list":
        return [_sample(shape.member)] * int(shape.metadata.get("min", 0))
    if t == "map":
        return {}
    if t == "string":
        return shape.enum[0] if shape.enum else "x" * max(int(shape.metadata.get("min", 1)), 1)
    if t in ("integer", "long"):
        return int(shape.metadata.get("min", 1))
    if t in ("float", "double"):
        return float(shape.metadata.get("min", 1))
    if t == "boolean":
        return True
    return "x"  # blob, timestamp: accepted as given


def _concrete(params: Any, shape, where: str, dynamic: set[str], skip: set[str] = frozenset()) -> Any:
    """``params`` with every ``Key.$`` (a path or intrinsic) and every unresolved CDK token replaced by a sample of
    its member's shape; the sampled paths go to ``dynamic`` (their values are known only at run time)."""
    if isinstance(params, str) and "${Token[" in params:
        dynamic.add(where)
        return _sample(shape)
    if shape.type_name == "structure" and isinstance(params, Mapping):
        out = {}
        for key, value in params.items():
            name = key[:-2] if key.endswith(".$") else key
            member = shape.members.get(name)
            if member is None:
                out[name] = value  # reported by shape_errors as "not a member"
            elif key.endswith(".$") or name in skip:
                dynamic.add(f"{where}.{name}")
                out[name] = _sample(member)
            else:
                out[name] = _concrete(value, member, f"{where}.{name}", dynamic)
        return out
    if shape.type_name == "list" and isinstance(params, list):
        return [_concrete(v, shape.member, f"{where}[{i}]", dynamic) for i, v in enumerate(params)]
    if shape.type_name == "map" and isinstance(params, Mapping):
        out = {}
        for k, v in params.items():
            name = k[:-2] if k.endswith(".$") else k
            if k.endswith(".$"):
                dynamic.add(f"{where}.{name}")
                out[name] = _sample(shape.value)
            else:
                out[name] = _concrete(v, shape.value, f"{where}.{name}", dynamic)
        return out
    return params


def task_request_errors(name: str, state: Mapping[str, Any]) -> list[str]:
    """Every way a Task's Parameters break its API's input shape (types, required, enums, lengths, ranges and
    patterns, through mlinfra.domain.api_model), ignoring what only run-time values decide."""
    service, op = operation_of(state["Resource"])
    shape = operation_input(service, op)
    dynamic: set[str] = set()
    skip = {m for (s, o, m) in SERIALISED if (s, o) == (service, op)}
    root = f"{name} ({service}:{op})"
    request = _concrete(dict(state.get("Parameters", {})), shape, root, dynamic, skip)

    def decided_at_run_time(error: str) -> bool:
        path = error.split(": ", 1)[0]
        return any(path == d or path.startswith((d + ".", d + "[", d + "<")) for d in dynamic)

    return [e for e in shape_errors(shape, request, root) if not decided_at_run_time(e)]


def _valid_error_names(service_prefix: str) -> set[str]:
    model = service_model(SERVICES[service_prefix])
    names = {e.name if e.name.endswith("Exception") else f"{e.name}Exception" for e in model.error_shapes}
    names.add(GENERIC.get(service_prefix, ""))
    return {f"{service_prefix}.{n}" for n in names if n}


def error_name_errors(definition: Mapping[str, Any]) -> list[str]:
    errors = []
    for name, state in iter_states(definition):
        for rule in [*state.get("Retry", []), *state.get("Catch", [])]:
            for error in rule["ErrorEquals"]:
                if error.startswith("States.") or "." not in error:
                    continue  # Step Functions' own names, and our own error names (Fail/Pass states)
                prefix = error.split(".", 1)[0]
                if prefix not in SERVICES:
                    errors.append(f"{name}: {error!r}: unknown service prefix {prefix!r}")
                elif error not in _valid_error_names(prefix) and error not in LAMBDA_DOCUMENTED:
                    errors.append(f"{name}: {error!r} is no error {prefix} can raise (model errors + 'Exception', or {GENERIC.get(prefix)})")
    return errors


def iter_states(definition: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every state, nested Map/Parallel states included."""
    for name, state in definition["States"].items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from iter_states(branch)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from iter_states(state[key])


def definition_errors(definition: Mapping[str, Any]) -> list[str]:
    errors = error_name_errors(definition)
    for name, state in iter_states(definition):
        if state["Type"] == "Task":
            errors += task_request_errors(name, state)
    return errors
