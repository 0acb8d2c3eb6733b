"""An existing SageMaker endpoint, rebuilt from its attributes (``Endpoint.from_endpoint_attributes``).

Consumers (a dashboard, a caller's role, a drift monitor) need the endpoint's name, ARN, variants, metrics and
``grant_invoke``; they get the same handles whether the endpoint was built in this app or elsewhere.
"""

from __future__ import annotations

import re
from typing import Sequence

import aws_cdk as cdk
from constructs import Construct

from mlinfra.constructs.common import is_token, path_in_errors
from mlinfra.constructs.endpoint.metrics import _MetricsMixin
from mlinfra.constructs.endpoint.permissions import _InvokeMixin
from mlinfra.constructs.endpoint.props import _NAME_RE, ProductionVariant

__all__ = ["ImportedEndpoint"]

_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:endpoint/(.+)$")


class ImportedEndpoint(_MetricsMixin, _InvokeMixin, Construct):
    """An endpoint this app does not manage: metrics and the invoke grant only.

    :param endpoint_name: the endpoint's name (or give ``endpoint_arn``).
    :param endpoint_arn: its ARN. :default: built from the name in this stack's account and region
    :param variant_names: its production variants, the primary first. :default: ("AllTraffic",)
    """

    @path_in_errors
    def __init__(self, scope: Construct, id: str, *, endpoint_name: str | None = None, endpoint_arn: str | None = None,
                 variant_names: Sequence[str] = ("AllTraffic",)) -> None:
        super().__init__(scope, id)
        if endpoint_name is None and endpoint_arn is None:
            raise ValueError(f"{self.node.path}: endpoint_name or endpoint_arn is required, got: neither")
        if endpoint_arn is not None and not is_token(endpoint_arn):
            m = _ARN_RE.fullmatch(endpoint_arn)
            if not m:
                raise ValueError(f"{self.node.path}: endpoint_arn must be arn:aws:sagemaker:<region>:<account>:endpoint/<name>, "
                                 f"got: {endpoint_arn!r}")
            if endpoint_name is not None and not is_token(endpoint_name) and m.group(1) != endpoint_name.lower():
                raise ValueError(f"{self.node.path}: endpoint_name {endpoint_name!r} does not match endpoint_arn {endpoint_arn!r}")
            endpoint_name = endpoint_name or m.group(1)
        assert endpoint_name is not None
        if not is_token(endpoint_name) and not _NAME_RE.fullmatch(endpoint_name):
            raise ValueError(f"{self.node.path}: endpoint_name must be 1-63 letters, digits or hyphens, got: {endpoint_name!r}")
        names = list(variant_names)
        bad = [n for n in names if not _NAME_RE.fullmatch(n)]
        if not names or bad:
            raise ValueError(f"{self.node.path}: variant_names must name 1 or more variants (letters, digits, hyphens), got: {names}")
        self.endpoint_name = endpoint_name
        # SageMaker endpoint ARNs carry the name in lower case.
        self.endpoint_arn = endpoint_arn or cdk.Stack.of(self).format_arn(
            service="sagemaker", resource="endpoint", resource_name=endpoint_name if is_token(endpoint_name) else endpoint_name.lower())
        self.variants = [ProductionVariant(name=n) for n in names]

    @property
    def primary_variant(self) -> ProductionVariant:
        return self.variants[0]
