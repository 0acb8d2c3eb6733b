"""A small IAM policy evaluator for synthesized templates: does this principal's policy allow this request?

Pure Python (no CDK import), for tests that try a crossing between teams and expect it to fail: they read the
synthesized policies, resolve the CloudFormation intrinsics to concrete ARNs (:class:`Resolver`) and evaluate a
request (action, resource, request context) the way IAM does for one account:

- an explicit ``Deny`` wins; otherwise an ``Allow`` is needed; otherwise the request is implicitly denied;
- with a permissions boundary, the request must be allowed by the identity policies AND by the boundary
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html);
- ``Action``/``NotAction``, ``Resource``/``NotResource``, ``Principal`` (trust policies) and the condition operators
  used in this project: ``String*``, ``Arn*``, ``Bool``, ``Null``, their ``...IfExists`` forms and the
  ``ForAnyValue:``/``ForAllValues:`` set prefixes (https://docs.aws.amazon.com/IAM/latest/UserGuide/
  reference_policies_elements_condition_operators.html). Keys compare case-insensitively, values case-sensitively.

Over a whole app, :class:`Assembly` finds what applies to one request: a role's identity policies (its inline
policies and every ``AWS::IAM::Policy``/``ManagedPolicy`` attached to it in any template, cross-stack attachments
followed through ``Fn::ImportValue``), its trust policy and boundary, and the resource policies of KMS keys and S3
buckets; :meth:`Role.can` combines them for one account: a bucket policy OR the identity policies may allow; a key
policy must allow, naming the role or delegating to the account (then the identity policies must allow too:
https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html).

It is deliberately small: no policy variables, no numeric or date operators, no SCPs or session policies.
An operator it does not know raises, so a test never passes by ignoring a condition. (No maintained IAM policy
*evaluation* library installs offline: the registry's candidates lint or generate policies, such as parliament
and policy-sentry.)
"""

from __future__ import annotations

import dataclasses
import re
from fnmatch import fnmatchcase
from typing import Any, Iterable, Iterator, Mapping

__all__ = ["Assembly", "Resolver", "Request", "Role", "evaluate", "allowed", "statements_of"]

ACCOUNT = "111111111111"
REGION = "us-east-1"
PARTITION = "aws"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Resolver:
    """Resolves CloudFormation intrinsics in the templates of one assembly to concrete strings.

    ``Ref``/``Fn::GetAtt`` of a role become ``arn:aws:iam::<account>:role<Path><LogicalId>``; of other resources,
    ``<template>/<LogicalId>`` (or ``...<LogicalId>.<Attr>``) unless ``names`` maps the logical id; ``Fn::ImportValue`` follows
    the exporting template's output; pseudo parameters become ``account``/``region``/``partition``.
    """

    def __init__(self, templates: Mapping[str, Mapping[str, Any]], *, account: str = ACCOUNT, region: str = REGION,
                 names: Mapping[str, str] | None = None) -> None:
        self.templates = dict(templates)
        self.pseudo = {"AWS::AccountId": account, "AWS::Region": region, "AWS::Partition": PARTITION,
                       "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None, "AWS::StackName": "stack",
                       "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/stack/00000000-0000"}
        self.account, self.region = account, region
        self.names = dict(names or {})
        self._exports: dict[str, tuple[str, Any]] = {}
        for name, tpl in self.templates.items():
            for out in (tpl.get("Outputs") or {}).values():
                export = (out.get("Export") or {}).get("Name")
                if isinstance(export, str):
                    self._exports[export] = (name, out["Value"])

    def _ref(self, template: str, logical_id: str, attr: str | None) -> str:
        if logical_id in self.pseudo:
            return self.pseudo[logical_id]
        params = self.templates[template].get("Parameters") or {}
        if logical_id in params:
            return str(params[logical_id].get("Default", f"<param:{logical_id}>"))
        res = (self.templates[template].get("Resources") or {}).get(logical_id)
        if res is not None and res["Type"] == "AWS::IAM::Role" and attr in (None, "Arn"):
            path = res.get("Properties", {}).get("Path", "/")
            name = res.get("Properties", {}).get("RoleName") or logical_id
            name = name if isinstance(name, str) else logical_id
            return f"arn:{PARTITION}:iam::{self.account}:role{path}{name}" if attr == "Arn" else name
        if res is not None and res["Type"] == "AWS::IAM::ManagedPolicy" and attr is None:
            path = res.get("Properties", {}).get("Path", "/")
            name = res.get("Properties", {}).get("ManagedPolicyName") or logical_id
            return f"arn:{PARTITION}:iam::{self.account}:policy{path}{name}"
        base = self.names.get(logical_id, f"{template}/{logical_id}")
        return base if attr is None else f"{base}.{attr}"

    def resolve(self, value: Any, template: str) -> Any:
        """``value`` with every intrinsic resolved (lists and mappings recursively)."""
        if isinstance(value, list):
            return [self.resolve(v, template) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(template, arg, None)
            if key == "Fn::GetAtt":
                res, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._ref(template, res, attr)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(self.resolve(i, template)) for i in self.resolve(items, template))
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

                def sub(m: re.Match) -> str:
                    name = m.group(1)
                    if name in variables:
                        return str(self.resolve(variables[name], template))
                    res, _, attr = name.partition(".")
                    return str(self._ref(template, res, attr or None))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if key == "Fn::ImportValue":
                name = self.resolve(arg, template)
                source, out = self._exports[name]
                return self.resolve(out, source)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items, template)[int(self.resolve(index, template))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text, template)).split(sep)
        return {k: self.resolve(v, template) for k, v in value.items()}


def statements_of(document: Mapping[str, Any] | None) -> list[dict]:
    return [dict(s) for s in _as_list((document or {}).get("Statement"))]


@dataclasses.dataclass(frozen=True)
class Request:
    """One request: ``action`` on ``resource`` with a request ``context`` (condition keys -> value or list)."""

    action: str
    resource: str = "*"
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: For trust policies: the calling principal (an ARN, or a service such as ``sagemaker.amazonaws.com``).
    principal: str | None = None


def _match(pattern: str, value: str, *, case: bool) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatchcase(value, pattern.replace("[", "[[]"))


def _principal_matches(spec: Any, principal: str | None) -> bool:
    if spec == "*":
        return True
    if principal is None:
        return False
    for kind, values in (spec or {}).items():
        for v in _as_list(values):
            v = str(v)
            if v == "*" or v == principal:
                return True
            if kind == "AWS":
                m = re.fullmatch(r"arn:[^:]+:iam::(\d{12}):root", v) or re.fullmatch(r"(\d{12})", v)
                if m and re.match(rf"arn:[^:]+:(iam|sts)::{m.group(1)}:", principal):
                    return True
    return False


def _condition_ok(block: Mapping[str, Any] | None, context: Mapping[str, Any]) -> bool:
    ctx = {k.lower(): v for k, v in context.items()}
    for op, tests in (block or {}).items():
        set_op, _, base = op.rpartition(":")
        if_exists = base.endswith("IfExists")
        base = base[: -len("IfExists")] if if_exists else base
        for key, expected in tests.items():
            expected = [str(e).lower() if isinstance(e, bool) else str(e) for e in _as_list(expected)]
            present = key.lower() in ctx
            if base == "Null":
                if (expected[0].lower() == "true") == present:
                    return False
                continue
            if not present:
                if if_exists:
                    continue
                if base.startswith(("StringNot", "ArnNot")) and not set_op:
                    continue  # a negated operator on a missing key matches
                return False
            actual = [str(a).lower() if isinstance(a, bool) else str(a) for a in _as_list(ctx[key.lower()])]
            results = [_op(base, a, expected) for a in actual]
            if set_op == "ForAllValues":
                ok = all(results)
            else:
                ok = any(results) if set_op == "ForAnyValue" or len(actual) > 1 else results[0]
            if not ok:
                return False
    return True


def _op(base: str, actual: str, expected: list[str]) -> bool:
    if base == "StringEquals" or base == "ArnEquals" and "*" not in "".join(expected):
        return actual in expected
    if base == "StringNotEquals":
        return actual not in expected
    if base == "StringEqualsIgnoreCase":
        return actual.lower() in [e.lower() for e in expected]
    if base in ("StringLike", "ArnLike", "ArnEquals"):
        return any(_match(e, actual, case=True) for e in expected)
    if base in ("StringNotLike", "ArnNotLike", "ArnNotEquals"):
        return not any(_match(e, actual, case=True) for e in expected)
    if base == "Bool":
        return actual.lower() in [e.lower() for e in expected]
    raise ValueError(f"iam_eval: condition operator {base!r} is not supported")


def _statement_applies(st: Mapping[str, Any], req: Request) -> bool:
    if "Action" in st and not any(_match(a, req.action, case=False) for a in _as_list(st["Action"])):
        return False
    if "NotAction" in st and any(_match(a, req.action, case=False) for a in _as_list(st["NotAction"])):
        return False
    if "Resource" in st and not any(_match(str(r), req.resource, case=True) for r in _as_list(st["Resource"])):
        return False
    if "NotResource" in st and any(_match(str(r), req.resource, case=True) for r in _as_list(st["NotResource"])):
        return False
    if "Principal" in st and not _principal_matches(st["Principal"], req.principal):
        return False
    if "NotPrincipal" in st:
        raise ValueError("iam_eval: NotPrincipal is not supported")
    return _condition_ok(st.get("Condition"), req.context)


def evaluate(statements: Iterable[Mapping[str, Any]], req: Request) -> str:
    """``"Allow"``, ``"Deny"`` (explicit) or ``"ImplicitDeny"`` for ``req`` under ``statements``."""
    decision = "ImplicitDeny"
    for st in statements:
        if _statement_applies(st, req):
            if st.get("Effect") == "Deny":
                return "Deny"
            decision = "Allow"
    return decision


def allowed(identity: Iterable[Mapping[str, Any]], req: Request, *,
            boundary: Iterable[Mapping[str, Any]] | None = None) -> bool:
    """True when the identity statements allow ``req`` and, if given, the permissions boundary does too."""
    if evaluate(identity, req) != "Allow":
        return False
    return boundary is None or evaluate(boundary, req) == "Allow"


def _delegates_to_account(statement: Mapping[str, Any]) -> bool:
    """The statement names only accounts (``arn:...:root`` or an account id): a key policy's delegation to IAM."""
    principals = [str(p) for p in _as_list((statement.get("Principal") or {}).get("AWS"))] \
        if isinstance(statement.get("Principal"), Mapping) else []
    return bool(principals) and all(re.fullmatch(r"arn:[^:]+:iam::\d{12}:root|\d{12}", p) for p in principals)


@dataclasses.dataclass(frozen=True)
class Role:
    """One role of an :class:`Assembly`, its policies resolved to concrete ARNs."""

    arn: str
    identity: list[dict]
    trust: list[dict]
    boundary: list[dict] | None

    def can(self, req: Request, *, resource_policy: Iterable[Mapping[str, Any]] | None = None,
            key_policy: Iterable[Mapping[str, Any]] | None = None) -> bool:
        """Same-account IAM for this role: an explicit Deny anywhere wins; a ``key_policy`` must allow (by naming the
        role, or by delegating to the account when the identity policies allow too); otherwise the identity
        policies (within the boundary) or the ``resource_policy`` must allow."""
        req = dataclasses.replace(req, principal=self.arn)
        resource = None if resource_policy is None else list(resource_policy)
        key = None if key_policy is None else list(key_policy)
        if "Deny" in (evaluate(self.identity, req), evaluate(resource or [], req), evaluate(key or [], req)):
            return False
        by_identity = allowed(self.identity, req, boundary=self.boundary)
        if key is not None:
            direct = evaluate([s for s in key if not _delegates_to_account(s)], req) == "Allow"
            return direct or (by_identity and evaluate(key, req) == "Allow")
        return by_identity or (resource is not None and evaluate(resource, req) == "Allow")


class Assembly:
    """The IAM of one app's templates (``{template name: template}``), resolved by a :class:`Resolver`."""

    def __init__(self, templates: Mapping[str, Mapping[str, Any]], *, account: str = ACCOUNT, region: str = REGION,
                 names: Mapping[str, str] | None = None) -> None:
        self.resolver = Resolver(templates, account=account, region=region, names=names)
        self.templates = self.resolver.templates

    def resources(self, type_: str) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        """(template, logical id, properties) of every resource of ``type_``."""
        for template, tpl in self.templates.items():
            for logical, res in (tpl.get("Resources") or {}).items():
                if res["Type"] == type_:
                    yield template, logical, res.get("Properties") or {}

    def arn(self, template: str, logical_id: str) -> str:
        return self.resolver.resolve({"Fn::GetAtt": [logical_id, "Arn"]}, template)

    def role(self, template: str, logical_id: str) -> Role:
        props = self.templates[template]["Resources"][logical_id].get("Properties") or {}
        name = self.resolver.resolve({"Ref": logical_id}, template)
        docs = [(template, p.get("PolicyDocument")) for p in props.get("Policies") or []]
        for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for tpl, _, policy in self.resources(type_):
                if name in self.resolver.resolve(policy.get("Roles") or [], tpl):
                    docs.append((tpl, policy["PolicyDocument"]))
        for arn in props.get("ManagedPolicyArns") or []:
            managed = self.resolver.resolve(arn, template)
            docs += [(tpl, policy["PolicyDocument"]) for tpl, logical, policy in self.resources("AWS::IAM::ManagedPolicy")
                     if self.resolver.resolve({"Ref": logical}, tpl) == managed and (tpl, policy["PolicyDocument"]) not in docs]
        boundary = props.get("PermissionsBoundary")
        boundary_doc = None
        if boundary is not None:
            arn = self.resolver.resolve(boundary, template)
            found = [(tpl, policy["PolicyDocument"]) for tpl, logical, policy in self.resources("AWS::IAM::ManagedPolicy")
                     if self.resolver.resolve({"Ref": logical}, tpl) == arn]
            if len(found) != 1:
                raise ValueError(f"iam_eval: the boundary {arn} of {template}/{logical_id} is not one policy of the app")
            boundary_doc = statements_of(self.resolver.resolve(found[0][1], found[0][0]))
        return Role(
            arn=self.arn(template, logical_id),
            identity=[s for tpl, doc in docs for s in statements_of(self.resolver.resolve(doc, tpl))],
            trust=statements_of(self.resolver.resolve(props.get("AssumeRolePolicyDocument"), template)),
            boundary=boundary_doc,
        )

    def key_policy(self, template: str, logical_id: str) -> list[dict]:
        """The statements of the key policy of the KMS key ``template``/``logical_id``."""
        key = self.templates[template]["Resources"][logical_id]
        if key["Type"] != "AWS::KMS::Key":
            raise ValueError(f"iam_eval: {template}/{logical_id} is a {key['Type']}, not an AWS::KMS::Key")
        return statements_of(self.resolver.resolve(key["Properties"]["KeyPolicy"], template))

    def bucket_policy(self, template: str, logical_id: str) -> list[dict]:
        """The statements of the bucket policies (in any template) of the bucket ``template``/``logical_id``."""
        bucket = self.resolver.resolve({"Ref": logical_id}, template)
        return [s for tpl, _, props in self.resources("AWS::S3::BucketPolicy") if self.resolver.resolve(props["Bucket"], tpl) == bucket
                for s in statements_of(self.resolver.resolve(props["PolicyDocument"], tpl))]
