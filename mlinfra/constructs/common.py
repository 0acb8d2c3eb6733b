"""Small pieces every mlinfra construct shares: cdk-nag acknowledgments, the two-key data removal rule,
the platform tag aspect and token-aware validation helpers."""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Iterable, Mapping, TypeVar

import aws_cdk as cdk
import jsii
from constructs import Construct, IConstruct

#: App context flag that, together with a construct's own prop, lets `cdk destroy` delete data.
ALLOW_DATA_DESTRUCTION_CONTEXT = "mlinfra:allowDataDestruction"


#: Namespace of cdk-nag's AwsSolutions pack (the default of :func:`acknowledge`).
NAG = "AwsSolutions"
#: Namespace of checkov's CloudFormation checks (``checkov::CKV_AWS_117``).
CHECKOV = "checkov"
#: Namespace of the cfn-guard plugin (``cdk-validator-cfnguard``, AWS Control Tower proactive-control rules):
#: ``cfn-guard::lambda_inside_vpc_check``.
CFN_GUARD = "cfn-guard"
#: The policy-validation plugin name CDK reports cfn-guard findings under.
CFN_GUARD_PLUGIN = "cdk-validator-cfnguard"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one accepted scanner finding on ``scope`` (and its children), with the reason.

    ``rule`` names the scanner and the rule:

    - ``"AwsSolutions-IAM5"`` (or a full ``AwsSolutions::...`` id): cdk-nag, through CDK's ``Validations``;
    - ``"cfn-guard::<rule>"`` (e.g. ``cfn-guard::lambda_inside_vpc_check``): the cfn-guard plugin
      (``cdk-validator-cfnguard``) through CDK's ``Validations``, so the reason is in ``validation-report.json``;
    - ``"checkov::<id>"`` (e.g. ``checkov::CKV_AWS_117``): checkov, as resource metadata
      ``checkov: {skip: [{id, comment: reason}]}`` on every CloudFormation resource under ``scope`` (checkov's
      documented in-template suppression; rules of other resource types ignore it).
    """
    if not reason or len(reason) < 20:
        raise ValueError(f"acknowledge: a specific reason is required for {rule}, got: {reason!r}")
    namespace, sep, name = rule.partition("::")
    if not sep:
        namespace, name = NAG, rule
    if not name:
        raise ValueError(f"acknowledge: rule must be '<scanner>::<rule>' or a cdk-nag id, got: {rule!r}")
    if namespace == CHECKOV:
        _skip_checkov(scope, name, reason)
        return
    if namespace == CFN_GUARD:
        namespace = CFN_GUARD_PLUGIN
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{namespace}::{name}", reason=reason))


def _skip_checkov(scope: IConstruct, check_id: str, reason: str) -> None:
    if not re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check_id):
        raise ValueError(f"acknowledge: a checkov id is CKV_<FRAMEWORK>_<n> or CKV2_<FRAMEWORK>_<n>, got: {check_id!r}")
    resources = [c for c in scope.node.find_all() if isinstance(c, cdk.CfnResource)]
    if not resources:
        raise ValueError(f"acknowledge: {scope.node.path} holds no CloudFormation resource to skip {check_id} on")
    for res in resources:
        meta = dict(res.get_metadata(CHECKOV) or {})
        skips = [s for s in meta.get("skip", []) if s.get("id") != check_id]
        meta["skip"] = [*skips, {"id": check_id, "comment": reason}]
        res.add_metadata(CHECKOV, meta)


def limit_grants_to_aws_services(key: Any) -> None:
    """AWS Control Tower CT.KMS.PR.3 on a key this app owns: a key-policy statement denying ``kms:CreateGrant`` unless
    the grant is for an AWS resource (``kms:GrantIsForAWSResource``, set when an integrated service such as SageMaker,
    FSx, EBS, Lambda or DynamoDB creates it for the caller) or the caller is an AWS service. No mlinfra role creates
    grants itself. Imported keys (``IKey``) are left to their owner."""
    from aws_cdk import aws_iam, aws_kms

    if isinstance(key, aws_kms.Key):
        key.add_to_resource_policy(aws_iam.PolicyStatement(
            sid="GrantsOnlyForAwsResources", effect=aws_iam.Effect.DENY, principals=[aws_iam.AnyPrincipal()],
            actions=["kms:CreateGrant"], resources=["*"],
            conditions={"BoolIfExists": {"kms:GrantIsForAWSResource": "false", "aws:PrincipalIsAWSService": "false"}},
        ))


#: Why Batch launch templates run without EC2 detailed monitoring (Control Tower CT.EC2.PR.? monitoring check).
BATCH_BASIC_MONITORING = ("Batch GPU instances are short-lived and scale to zero; 5-minute basic metrics, the jobs' logs "
                          "and the queue's metrics suffice, and detailed monitoring is billed per instance")
#: Why the Batch launch templates keep IMDS hop limit 2 (until issue 13 item 4 lowers it).
BATCH_HOP_LIMIT = ("Job containers reach IMDSv2 through the docker bridge (hop limit 2); issue 13 item 4 sets hop limit 1 "
                   "where jobs run with their own job role")


def acknowledge_access_log_destination(bucket: IConstruct) -> None:
    """Acknowledge the findings every S3 server-access-log destination bucket has by its nature."""
    loop = "This is a server access log destination; logging it into itself would loop"
    for rule, reason in (
        ("AwsSolutions-S1", loop),
        ("checkov::CKV_AWS_18", loop),
        ("cfn-guard::s3_bucket_logging_enabled_check", loop),
        ("cfn-guard::s3_bucket_default_encryption_kms_check", "S3 server access logging delivers only to buckets "
         "encrypted with SSE-S3, not SSE-KMS (S3 user guide, enabling server access logging)"),
        ("cfn-guard::s3_event_notifications_enabled_check", "Access log objects have no consumer to notify; they are "
         "read by Athena queries when investigating"),
    ):
        acknowledge(bucket, rule, reason)


def is_token(value: Any) -> bool:
    """True when ``value`` is an unresolved CDK token (it is then skipped by literal validation): the one test
    every validation uses, for strings, numbers and lists; a ``Duration`` is a token when its amount is."""
    if value is None:
        return False
    if isinstance(value, cdk.Duration):
        return value.is_unresolved()
    return cdk.Token.is_unresolved(value)


def literal_seconds(duration: cdk.Duration | None) -> float | None:
    """``duration`` in seconds, or None when it is None or an unresolved token (a ``Duration.seconds(param)``):
    validation compares the literal only. Never call ``to_seconds()`` on a prop before this: a token number
    compares as -1.888e+289, and a token ``Duration.minutes(...)`` cannot be converted at all."""
    if duration is None or is_token(duration):
        return None
    return duration.to_seconds()


def token_text(value: Any) -> str:
    """How an unresolved token reads in an error message (``${Token[TOKEN.123]}``, not -1.888e+289)."""
    if isinstance(value, cdk.Duration):
        try:
            return f"{cdk.Token.as_string(value.to_seconds())} seconds"
        except Exception:  # noqa: BLE001 - a token Duration.minutes/hours/days has no seconds at synth time
            return value.to_string()
    return cdk.Token.as_string(value)


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def check_between(prop: str, value: Any, low: float, high: float, unit: str = "") -> None:
    """Raise ``"<prop> must be between <low> and <high> <unit>, got: <value>"`` unless ``low <= value <= high``.
    ``value`` is a number or a ``Duration`` (compared in seconds); None and unresolved tokens are skipped (a
    CloudFormation parameter is legal wherever the value goes straight into a resource property)."""
    if value is None or is_token(value):
        return
    number = value.to_seconds() if isinstance(value, cdk.Duration) else value
    if not low <= number <= high:
        suffix = f" {unit}" if unit else ""
        raise ValueError(f"{prop} must be between {_number_text(low)} and {_number_text(high)}{suffix}, "
                         f"got: {_number_text(number)}{suffix}")


def require_literal(prop: str, value: Any, why: str) -> None:
    """Raise when ``value`` is an unresolved token although the construct computes with it at synth time (``why``:
    what it decides), so the user reads which prop needs a literal instead of a broken template."""
    if value is not None and is_token(value):
        raise ValueError(f"{prop} must be a literal value, not an unresolved token ({why}), got: {token_text(value)}")


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


def alarm_principal() -> "cdk.aws_iam.IPrincipal":
    """CloudWatch alarms as a principal of a key or topic policy, only for alarms of this account and region
    (confused-deputy prevention: aws:SourceAccount and aws:SourceArn, which CloudWatch sends; SNS developer guide,
    "Enable compatibility between event sources from AWS services and encrypted topics")."""
    from aws_cdk import aws_iam

    return aws_iam.ServicePrincipal("cloudwatch.amazonaws.com").with_conditions({
        "StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID},
        "ArnLike": {"aws:SourceArn": f"arn:{cdk.Aws.PARTITION}:cloudwatch:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:alarm:*"},
    })


def logs_principal() -> "cdk.aws_iam.IPrincipal":
    """CloudWatch Logs as a principal of a key policy, only for this account's log groups in this region (the
    condition AWS documents for log-group encryption: kms:EncryptionContext:aws:logs:arn)."""
    from aws_cdk import aws_iam

    return aws_iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com").with_conditions({
        "ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                    f"arn:{cdk.Aws.PARTITION}:logs:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:log-group:*"},
    })


def events_only_from_this_account(resource: Any, actions: Iterable[str]) -> "cdk.aws_iam.PolicyStatement":
    """A deny guard for a queue or topic policy: EventBridge may deliver only from rules of this account and
    region (aws:SourceArn, which EventBridge sends to SQS and SNS targets), whatever allows CDK adds."""
    from aws_cdk import aws_iam

    return aws_iam.PolicyStatement(
        sid="EventsOnlyFromThisAccountsRules", effect=aws_iam.Effect.DENY,
        principals=[aws_iam.ServicePrincipal("events.amazonaws.com")], actions=list(actions), resources=[resource],
        conditions={"ArnNotLike": {"aws:SourceArn":
                                   f"arn:{cdk.Aws.PARTITION}:events:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:rule/*"}},
    )


def encrypted_log_group(scope: Construct, id: str, *, key: "cdk.aws_kms.IKey", retention: "cdk.aws_logs.RetentionDays",
                        removal_policy: cdk.RemovalPolicy) -> "cdk.aws_logs.LogGroup":
    """A CloudWatch Logs group encrypted with ``key``, after granting ``key`` to this region's CloudWatch Logs."""
    from aws_cdk import aws_logs

    key.grant_encrypt_decrypt(logs_principal())
    group = aws_logs.LogGroup(scope, id, retention=retention, encryption_key=key, removal_policy=removal_policy)
    acknowledge_retention(group, retention)
    return group


def acknowledge_retention(group: IConstruct, retention: "cdk.aws_logs.RetentionDays") -> None:
    """Acknowledge Control Tower's 365-day log retention rule on an operational log group kept shorter."""
    days = {name: d for d, name in _RETENTION_NAMES.items()}.get(getattr(retention, "name", str(retention)))
    if days is not None and days < 365:
        acknowledge(group, "cfn-guard::cloudwatch_log_group_retention_period_check",
                    f"Operational logs kept {days} days by the construct's retention prop (cost); audit records live "
                    "in CloudTrail, not in these groups")


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

    require_literal(prop, days, "it picks one of CloudWatch Logs' retention periods")
    if days not in _RETENTION_NAMES:
        raise ValueError(f"{prop} must be one of {sorted(_RETENTION_NAMES)}, got: {days}")
    return getattr(aws_logs.RetentionDays, _RETENTION_NAMES[days])
