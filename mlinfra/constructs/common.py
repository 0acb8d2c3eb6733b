"""Small pieces every mlinfra construct shares: cdk-nag acknowledgments, the two-key data removal rule,
the platform tag aspect and token-aware validation helpers."""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Mapping, TypeVar

import aws_cdk as cdk
import jsii
from constructs import Construct, IConstruct

#: App context flag that, together with a construct's own prop, lets `cdk destroy` delete data.
ALLOW_DATA_DESTRUCTION_CONTEXT = "mlinfra:allowDataDestruction"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag AwsSolutions finding on ``scope`` (and its children), with the reason.

    ``rule`` is the short id (``"AwsSolutions-IAM5"``) or a full validation id.
    """
    if not reason or len(reason) < 20:
        raise ValueError(f"acknowledge: a specific reason is required for {rule}, got: {reason!r}")
    rule_id = rule if "::" in rule else f"AwsSolutions::{rule}"
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))


def is_token(value: Any) -> bool:
    """True when ``value`` is an unresolved CDK token (it is then skipped by literal validation): the one test
    every validation uses, for strings, numbers and lists; a ``Duration`` is a token when its amount is."""
    if value is None:
        return False
    if isinstance(value, cdk.Duration):
        return value.is_unresolved()
    return cdk.Token.is_unresolved(value)


_Init = TypeVar("_Init", bound=Callable[..., None])


def path_in_errors(init: _Init) -> _Init:
    """Decorate a construct's ``__init__``: a ``ValueError`` raised while it builds starts with the construct's
    path (``Stack/Lake: zones must be ...``), so a large app shows where it failed. Errors of a construct
    inside it already start with a longer path and are left as they are."""

    @functools.wraps(init)
    def wrapper(self: Any, scope: IConstruct, id: str, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, scope, id, *args, **kwargs)
        except ValueError as exc:
            parent = scope.node.path
            path = f"{parent}/{id}" if parent else id
            message = str(exc.args[0]) if exc.args else ""
            if not message.startswith(path):
                exc.args = (f"{path}: {message}", *exc.args[1:])
            raise

    return wrapper  # type: ignore[return-value]


def data_destruction_allowed(scope: IConstruct) -> bool:
    """The app-wide key of data destruction: the context flag ``mlinfra:allowDataDestruction`` is true."""
    return str(scope.node.try_get_context(ALLOW_DATA_DESTRUCTION_CONTEXT)).lower() == "true"


def data_removal_policy(scope: Construct, destroy_requested: bool, what: str) -> cdk.RemovalPolicy:
    """RETAIN unless BOTH the prop asks for destruction AND the app context flag
    ``mlinfra:allowDataDestruction`` is true; with one key alone, RETAIN and a synth warning."""
    flag = data_destruction_allowed(scope)
    if destroy_requested and flag:
        return cdk.RemovalPolicy.DESTROY
    if destroy_requested != flag:
        cdk.Annotations.of(scope).add_warning_v2(
            "mlinfra:data-retained",
            f"{what} is RETAINED: deleting data needs both the prop and the app context flag "
            f"'{ALLOW_DATA_DESTRUCTION_CONTEXT}=true' (prop={destroy_requested}, flag={flag}).",
        )
    return cdk.RemovalPolicy.RETAIN


@jsii.implements(cdk.IAspect)
class PlatformTags:
    """The one aspect that tags every taggable resource with the platform's tags (project, environment,
    cost centre and extras). Applied once at the app root by :func:`apply_platform_tags`."""

    def __init__(self, tags: Mapping[str, str]) -> None:
        self._tags = dict(tags)

    def visit(self, node: IConstruct) -> None:
        manager = cdk.TagManager.of(node)
        if manager is not None:
            for key, value in self._tags.items():
                manager.set_tag(key, value, 100, True)


def encrypted_log_group(scope: Construct, id: str, *, key: "cdk.aws_kms.IKey", retention: "cdk.aws_logs.RetentionDays",
                        removal_policy: cdk.RemovalPolicy) -> "cdk.aws_logs.LogGroup":
    """A CloudWatch Logs group encrypted with ``key``, after granting ``key`` to this region's CloudWatch Logs."""
    from aws_cdk import aws_iam, aws_logs

    key.grant_encrypt_decrypt(aws_iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com"))
    return aws_logs.LogGroup(scope, id, retention=retention, encryption_key=key, removal_policy=removal_policy)


def encrypted_table(scope: Construct, id: str, *, partition_key: str, key: "cdk.aws_kms.IKey",
                    removal_policy: cdk.RemovalPolicy, deletion_protection: bool | None = None) -> "cdk.aws_dynamodb.Table":
    """The platform's DynamoDB table: string ``partition_key`` and ``sk`` keys, on demand, encrypted with ``key``,
    point-in-time recovery on."""
    from aws_cdk import aws_dynamodb as dynamodb

    return dynamodb.Table(
        scope, id,
        partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
        deletion_protection=deletion_protection,
        removal_policy=removal_policy,
    )


def apply_platform_tags(scope: IConstruct, tags: Mapping[str, str]) -> None:
    cdk.Aspects.of(scope).add(PlatformTags(tags))


def join_errors(prop: str, errors: Iterable[str]) -> None:
    """Raise one ``ValueError`` for all of ``prop``'s problems (aws-cdk-lib style), if any."""
    errors = list(errors)
    if errors:
        raise ValueError(f"{prop}: " + "; ".join(errors))


_RETENTION_NAMES = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS",
    1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}


def log_retention(days: int, prop: str = "retention_days") -> "cdk.aws_logs.RetentionDays":
    """The ``RetentionDays`` member for a number of days CloudWatch Logs accepts."""
    from aws_cdk import aws_logs

    if days not in _RETENTION_NAMES:
        raise ValueError(f"{prop} must be one of {sorted(_RETENTION_NAMES)}, got: {days}")
    return getattr(aws_logs.RetentionDays, _RETENTION_NAMES[days])
