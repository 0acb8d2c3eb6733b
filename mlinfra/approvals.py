"""``mlinfra approve``: a reviewer's decision on a retrain pipeline waiting for manual approval.

The pipeline's approval message (on its dedicated approval topic) carries a task token and the approval
function's URL (the ``ApprovalUrl`` output of the pipeline stack). This command sends the decision to that
Lambda function URL (AuthType ``AWS_IAM``), SigV4-signed (service ``lambda``) with the caller's own credentials;
the function records the signer's IAM identity as the reviewer and sends ``SendTaskSuccess`` (the pipeline
deploys) or ``SendTaskFailure`` (the package is rejected). Reviewers need only the function's
``grant_approve`` (``lambda:InvokeFunctionUrl`` with ``lambda:FunctionUrlAuthType = AWS_IAM`` and
``lambda:InvokeFunction`` only via the URL), never Step Functions permissions. ``--function`` still works: the
URL is looked up with ``GetFunctionUrlConfig`` (``lambda:GetFunctionUrlConfig`` on the function). A decision on a
token that has expired or was already used reports ``closed`` and exits 1; repeating a decision is harmless.

No aws_cdk import: the command starts fast and works from any machine with boto3 and credentials.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

DECISIONS = ("approve", "reject")
TOKEN_MAX = 2048  # SendTaskSuccess taskToken (botocore's Step Functions model), rule stepfunctions.task-token-length
#: https://<url-id>.lambda-url.<region>.on.aws/ (Lambda developer guide, "Invoking Lambda function URLs")
_URL_RE = re.compile(r"^https://[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws/?$")


def function_url(function_name: str, client: Any = None) -> str:
    """The function URL of ``function_name`` (GetFunctionUrlConfig); refuses one that is not AWS_IAM."""
    if client is None:
        import boto3

        client = boto3.client("lambda")
    config = client.get_function_url_config(FunctionName=function_name)
    if config.get("AuthType") != "AWS_IAM":
        raise ValueError(f"--function: {function_name}'s URL has AuthType {config.get('AuthType')!r}; "
                         "the approval function URL must be AWS_IAM")
    return config["FunctionUrl"]


def signed_request(url: str, body: bytes, credentials: Any, region: str) -> urllib.request.Request:
    """A POST to ``url`` signed with SigV4 for service ``lambda`` (what an AWS_IAM function URL verifies)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, "lambda", region).add_auth(request)
    return urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method="POST")


def decide(url: str, token: str, decision: str, reason: str = "", session: Any = None, timeout: float = 30) -> dict:
    """Send the signed decision to the approval function URL; returns its answer
    (``{"status": "sent"|"closed", ...}``; ``reviewer`` is the IAM identity the function recorded).

    Raises ``ValueError`` on bad arguments and ``RuntimeError`` when the URL refuses the request.
    """
    errors = []
    if decision not in DECISIONS:
        errors.append(f"decision must be one of {list(DECISIONS)}, got: {decision!r}")
    if not token or len(token) > TOKEN_MAX:
        errors.append(f"token must be the task token from the approval message (1-{TOKEN_MAX} characters)")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or (parts.scheme == "http" and parts.hostname != "127.0.0.1"):
        errors.append(f"url must be the approval function URL (https://<id>.lambda-url.<region>.on.aws/), got: {url!r}")
    if errors:
        raise ValueError("; ".join(errors))
    if session is None:
        import boto3

        session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise RuntimeError("no AWS credentials: the decision is signed with yours (your identity is the reviewer)")
    match = _URL_RE.match(url)
    region = match.group(1) if match else session.region_name
    if not region:
        raise ValueError(f"url: cannot tell the region from {url!r}; set AWS_REGION")
    body = json.dumps({"token": token, "decision": decision, "reason": reason}).encode()
    request = signed_request(url, body, credentials.get_frozen_credentials(), region)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (https, or http to 127.0.0.1)
            status, text = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    try:
        answer = json.loads(text or b"{}")
    except ValueError:
        answer = {}
    if status == 409 and answer.get("status") == "closed":
        return answer
    if status != 200:
        detail = answer.get("reason") or answer.get("Message") or answer.get("message") or text[:300].decode(errors="replace")
        raise RuntimeError(f"{url} answered {status}: {detail}")
    return answer


def run(args: argparse.Namespace) -> int:
    if args.reviewer is not None:
        print("mlinfra approve: error: --reviewer is no longer accepted: the reviewer recorded is the IAM identity "
              "whose credentials sign the request", file=sys.stderr)
        return 2
    try:
        url = args.url or function_url(args.function)
        answer = decide(url, args.token, args.decision, args.reason or "")
    except ValueError as exc:
        print(f"mlinfra approve: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the AWS call failed: credentials, permissions, a missing function or URL
        print(f"mlinfra approve: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer))
    elif answer.get("status") == "sent":
        who = f" (reviewer: {answer['reviewer']})" if answer.get("reviewer") else ""
        print((f"{args.decision}d: the pipeline continues" if args.decision == "approve" else "rejected: the package is marked Rejected") + who)
    else:
        print(f"not applied: the approval is {answer.get('status')} ({answer.get('reason', '')})")
    return 0 if answer.get("status") == "sent" else 1


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "approve",
        help="approve or reject a retrain pipeline run waiting for manual approval",
        description="Send a decision to a retrain pipeline waiting at its approval step, through the pipeline's "
        "approval function URL (the ApprovalUrl stack output), signed with your AWS credentials: your IAM identity "
        "is recorded as the reviewer. Exit 0 when the decision was applied, 1 when the approval had closed "
        "(expired or already decided) or the call failed, 2 on bad input.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the approval function URL (ApprovalUrl stack output, or the approval message)")
    where.add_argument("--function", help="the approval function's name or ARN (ApprovalFunctionName output): its "
                       "URL is looked up with GetFunctionUrlConfig")
    p.add_argument("--token", required=True, help="the task token from the approval message")
    p.add_argument("--decision", required=True, choices=DECISIONS)
    p.add_argument("--reviewer", help=argparse.SUPPRESS)  # refused: the reviewer is the signer
    p.add_argument("--reason", help="why (recorded; up to 500 characters)")
    p.add_argument("--json", action="store_true", help="print the function's answer as JSON")
    p.set_defaults(func=run)
