"""Who owns the served model: :class:`ModelPointer`, the one place the current model is recorded.

Two writers of one endpoint roll each other back: if the stack declares the model and a retrain pipeline
updates the endpoint, the next ``cdk deploy`` that touches the endpoint config puts the declared model back.
mlinfra gives the model ONE owner, the pointer: two SSM parameters (image and artifact URI) created once with
the initial model, read by the endpoint's stack at EVERY deploy (CloudFormation parameters of type
``AWS::SSM::Parameter::Value<String>`` resolve on each stack operation), and written by the retrain pipeline
after a successful rollout. The stack owns everything else (variants, capacity bounds, capture, alarms); the
pipeline owns which model serves. A ``cdk deploy`` after a rollout therefore resolves the rolled-out model, and
the endpoint keeps its current capacity (``RetainAllVariantProperties``); when the stack does change the endpoint,
CloudFormation applies the endpoint's ``DeploymentConfig`` (blue/green, auto-rollback) as the pipeline does.

The pointer lives in a stack deployed BEFORE the endpoint's stack (the parameters must exist when the endpoint's
stack resolves them), in the reference app the data-lake stack: it is state, like the lake.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from mlinfra.constructs.common import is_token, path_in_errors

__all__ = ["ModelPointer"]

_PARAM_PREFIX_RE = re.compile(r"^(/[a-zA-Z0-9_.-]+){1,10}$")


class ModelPointer(Construct):
    """The served model's image and artifact URI, as two SSM parameters (see the module docstring).

    :param parameter_prefix: SSM name prefix, e.g. ``/mlinfra/prod/models/churn`` (a literal: the endpoint's
        stack names it in a CloudFormation parameter). The parameters are ``<prefix>/image`` and
        ``<prefix>/model-data-url``.
    :param image_uri: the initial inference image.
    :param model_bucket: the bucket of model artifacts (the initial one and every rolled-out one).
    :param model_data_key: the initial artifact's key in ``model_bucket``.
    """

    @path_in_errors
    def __init__(self, scope: Construct, id: str, *, parameter_prefix: str, image_uri: str, model_bucket: s3.IBucket,
                 model_data_key: str) -> None:
        super().__init__(scope, id)
        if is_token(parameter_prefix) or not _PARAM_PREFIX_RE.fullmatch(parameter_prefix):
            raise ValueError(f"{self.node.path}: parameter_prefix must be a literal SSM path such as "
                             f"'/mlinfra/prod/models/churn' (letters, digits, _.-), got: {parameter_prefix!r}")
        if not is_token(model_data_key) and (not model_data_key or model_data_key.startswith("/")):
            raise ValueError(f"{self.node.path}: model_data_key must be an object key not starting with '/', "
                             f"got: {model_data_key!r}")
        self.parameter_prefix = parameter_prefix
        self.model_bucket = model_bucket
        self.image_parameter_name = f"{parameter_prefix}/image"
        self.model_data_parameter_name = f"{parameter_prefix}/model-data-url"
        self.image_parameter = ssm.StringParameter(
            self, "Image", parameter_name=self.image_parameter_name, string_value=image_uri,
            description="mlinfra: the served model's inference image (written by the retrain pipeline after a rollout)")
        self.model_data_parameter = ssm.StringParameter(
            self, "ModelDataUrl", parameter_name=self.model_data_parameter_name,
            string_value=f"s3://{model_bucket.bucket_name}/{model_data_key}",
            description="mlinfra: the served model's artifact (written by the retrain pipeline after a rollout)")

    @property
    def parameter_names(self) -> tuple[str, str]:
        return self.image_parameter_name, self.model_data_parameter_name

    @property
    def parameter_arns(self) -> tuple[str, str]:
        """The parameters' ARNs, built from their literal names (no cross-stack export for a consumer)."""
        stack = cdk.Stack.of(self)
        return tuple(stack.format_arn(service="ssm", resource="parameter", resource_name=n.lstrip("/"))
                     for n in self.parameter_names)  # type: ignore[return-value]

    def grant_update(self, grantee: iam.IGrantable) -> iam.Grant:
        """``ssm:PutParameter`` on exactly the two parameters (the retrain pipeline's state machine)."""
        return iam.Grant.add_to_principal(grantee=grantee, actions=["ssm:PutParameter"], resource_arns=list(self.parameter_arns))
