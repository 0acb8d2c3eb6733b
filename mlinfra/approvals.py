"""``mlinfra approve``: a reviewer's decision on a retrain pipeline waiting for manual approval.

The pipeline's approval message (SNS) carries a task token and names the approval function (the
``ApprovalFunctionName`` output of the pipeline stack). This command invokes that function, which sends
``SendTaskSuccess`` (the pipeline deploys) or ``SendTaskFailure`` (the package is rejected), so reviewers need
only ``lambda:InvokeFunction`` on that one function, never Step Functions permissions. A decision on a token
that has expired or was already used reports ``closed`` and exits 1; repeating a decision is harmless.

No aws_cdk import: the command starts fast and works from any machine with boto3 and credentials.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DECISIONS = ("approve", "reject")


def decide(function_name: str, token: str, decision: str, reviewer: str, reason: str = "", client: Any = None) -> dict:
    """Invoke the approval function; returns its answer (``{"status": "sent"|"closed", ...}``).

    Raises ``ValueError`` on bad arguments and ``RuntimeError`` when the function reports an error.
    """
    errors = []
    if decision not in DECISIONS:
        errors.append(f"decision must be one of {list(DECISIONS)}, got: {decision!r}")
    if not token or len(token) > 1024:
        errors.append("token must be the task token from the approval message (1-1024 characters)")
    if not reviewer.strip():
        errors.append("reviewer must name who decides (it is recorded with the model package)")
    if errors:
        raise ValueError("; ".join(errors))
    if client is None:
        import boto3

        client = boto3.client("lambda")
    payload = {"token": token, "decision": decision, "reviewer": reviewer.strip(), "reason": reason}
    response = client.invoke(FunctionName=function_name, Payload=json.dumps(payload).encode())
    body = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        raise RuntimeError(f"{function_name} failed: {body.get('errorType', 'Error')}: {body.get('errorMessage', body)}")
    return body


def run(args: argparse.Namespace) -> int:
    try:
        answer = decide(args.function, args.token, args.decision, args.reviewer, args.reason or "")
    except ValueError as exc:
        print(f"mlinfra approve: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the AWS call failed: credentials, permissions, a missing function
        print(f"mlinfra approve: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer))
    elif answer.get("status") == "sent":
        print(f"{args.decision}d: the pipeline continues" if args.decision == "approve" else "rejected: the package is marked Rejected")
    else:
        print(f"not applied: the approval is {answer.get('status')} ({answer.get('reason', '')})")
    return 0 if answer.get("status") == "sent" else 1


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "approve",
        help="approve or reject a retrain pipeline run waiting for manual approval",
        description="Send a reviewer's decision to a retrain pipeline waiting at its approval step, through the "
        "pipeline's approval function (the ApprovalFunctionName stack output). Exit 0 when the decision was "
        "applied, 1 when the approval had closed (expired or already decided) or the call failed, 2 on bad input.",
    )
    p.add_argument("--function", required=True, help="the approval function's name or ARN")
    p.add_argument("--token", required=True, help="the task token from the approval message")
    p.add_argument("--decision", required=True, choices=DECISIONS)
    p.add_argument("--reviewer", required=True, help="who decides (recorded with the model package)")
    p.add_argument("--reason", help="why (recorded; up to 500 characters)")
    p.add_argument("--json", action="store_true", help="print the function's answer as JSON")
    p.set_defaults(func=run)
