"""A small offline evaluator of the synthesized IAM: may principal P do action A on resource R?

No maintained IAM policy *evaluation* library installs offline (the registry's candidates lint or generate
policies: parliament, policy-sentry; iamspy is a 2022 0.0.1 prototype), so this is the few rules the platform's
data flows need, over the templates of every stack of one app:

- identity policies: ``AWS::IAM::Policy`` / ``ManagedPolicy`` attached to the role (in any stack: cross-stack
  attachments are followed through ``Fn::ImportValue``), and the role's inline ``Policies``;
- resource policies: KMS key policies (a key allows only what its policy allows, directly or by delegating
  to the account's IAM with an ``arn:...:root`` principal), S3 bucket policies (same account: identity OR bucket
  policy allows);
- an explicit Deny without conditions wins; a Deny WITH conditions (TLS-only and the like) is taken as not
  applying, and conditions of Allow statements as met: the evaluator proves "a grant exists", not least privilege.

Values are rendered symbolically: ``Ref X`` -> ``<stack:X>``, ``GetAtt X.Arn`` -> ``<stack:X.Arn>``, ``Join``s
concatenated, imports resolved to the exporting stack's value, pseudo parameters to the app's account/region.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

PARTITION = "aws"


class App:
    def __init__(self, templates: Mapping[str, Mapping[str, Any]], account: str, region: str) -> None:
        self.templates = dict(templates)
        self.account, self.region = account, region
        self.exports: dict[str, tuple[str, Any]] = {}
        for stack, t in self.templates.items():
            for out in t.get("Outputs", {}).values():
                if "Export" in out:
                    self.exports[self.render(stack, out["Export"]["Name"])] = (stack, out["Value"])

    # -- rendering -----------------------------------------------------------------------------------------
    def render(self, stack: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                pseudo = {"AWS::Partition": PARTITION, "AWS::AccountId": self.account, "AWS::Region": self.region,
                          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack}
                return pseudo.get(arg, f"<{stack}:{arg}>")
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return f"<{stack}:{logical}.{attr}>"
            if key == "Fn::Join":
                sep, parts = arg
                return sep.join(self.render(stack, p) for p in parts)
            if key == "Fn::ImportValue":
                name = self.render(stack, arg)
                producer, produced = self.exports[name]
                return self.render(producer, produced)
            if key == "Fn::Select":
                index, items = arg
                return self.render_list(stack, items)[int(index)]
            if key == "Fn::Sub" and isinstance(arg, str):
                return re.sub(r"\$\{([^}]+)\}", lambda m: self.render(stack, {"Ref": m.group(1)}), arg)
        return json.dumps(value, sort_keys=True)

    def render_list(self, stack: str, value: Any) -> list[str]:
        if isinstance(value, dict) and "Fn::Split" in value:
            sep, text = value["Fn::Split"]
            return self.render(stack, text).split(sep)
        return [self.render(stack, v) for v in (value if isinstance(value, list) else [value])]

    # -- policies ------------------------------------------------------------------------------------------
    def resources(self, type_: str) -> Iterable[tuple[str, str, Mapping[str, Any]]]:
        for stack, t in self.templates.items():
            for logical, res in t.get("Resources", {}).items():
                if res["Type"] == type_:
                    yield stack, logical, res.get("Properties", {})

    def identity_statements(self, role: str) -> list[tuple[str, Mapping[str, Any]]]:
        """(stack, statement) of every identity policy of ``role`` (``<stack:RoleLogicalId>``)."""
        out = []
        for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for stack, _, props in self.resources(type_):
                if role in [self.render(stack, r) for r in props.get("Roles", [])]:
                    out += [(stack, s) for s in _list(props["PolicyDocument"]["Statement"])]
        stack, logical = role.strip("<>").split(":", 1)
        role_props = self.templates[stack]["Resources"][logical].get("Properties", {})
        for policy in role_props.get("Policies", []):
            out += [(stack, s) for s in _list(policy["PolicyDocument"]["Statement"])]
        return out

    def identity_allows(self, role: str, action: str, resource: str) -> bool:
        statements = self.identity_statements(role)
        if any(_matches(self, st, s, action, resource, "Deny") for st, s in statements):
            return False
        return any(_matches(self, st, s, action, resource, "Allow") for st, s in statements)

    def _principals(self, stack: str, statement: Mapping[str, Any]) -> list[str]:
        p = statement.get("Principal", {})
        if p == "*":
            return ["*"]
        return [v for key in ("AWS",) for v in self.render_list(stack, p.get(key, []))]

    def key_allows(self, role: str, key: str, action: str) -> bool:
        """``role`` may use KMS key ``key`` (``<stack:KeyLogicalId.Arn>``) for ``action``."""
        stack, logical = key.strip("<>").rsplit(".", 1)[0].split(":", 1)
        policy = self.templates[stack]["Resources"][logical]["Properties"]["KeyPolicy"]
        role_arn = role[:-1] + ".Arn>"
        root = f"arn:{PARTITION}:iam::{self.account}:root"
        direct = delegated = False
        for s in _list(policy["Statement"]):
            if not _action_matches(s, action):
                continue
            who = self._principals(stack, s)
            if s["Effect"] == "Deny" and "Condition" not in s and (role_arn in who or "*" in who):
                return False
            if s["Effect"] == "Allow":
                direct |= role_arn in who
                delegated |= root in who
        return direct or (delegated and self.identity_allows(role, action, key))

    def bucket_allows(self, role: str, bucket: str, action: str, object_arn: str) -> bool:
        """Same-account S3: identity OR bucket policy allows, and no unconditional Deny in either."""
        role_arn = role[:-1] + ".Arn>"
        policy_allows = False
        for stack, _, props in self.resources("AWS::S3::BucketPolicy"):
            if self.render(stack, props["Bucket"]) != bucket:
                continue
            for s in _list(props["PolicyDocument"]["Statement"]):
                who = self._principals(stack, s)
                if not (role_arn in who or "*" in who):
                    continue
                if _matches(self, stack, s, action, object_arn, "Deny"):
                    return False
                policy_allows |= _matches(self, stack, s, action, object_arn, "Allow")
        return policy_allows or self.identity_allows(role, action, object_arn)


def _list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, flags=re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(_glob(a, action, ignore_case=True) for a in _list(statement["NotAction"]))
    return any(_glob(a, action, ignore_case=True) for a in _list(statement.get("Action", [])))


def _matches(app: App, stack: str, statement: Mapping[str, Any], action: str, resource: str, effect: str) -> bool:
    if statement.get("Effect") != effect or (effect == "Deny" and "Condition" in statement):
        return False
    if not _action_matches(statement, action):
        return False
    if "NotResource" in statement:
        return not any(_glob(r, resource) for r in app.render_list(stack, statement["NotResource"]))
    return any(_glob(r, resource) for r in app.render_list(stack, statement.get("Resource", [])))
