"""Retrain pipeline: the manual approval callback. Completes the waiting ``RequestApproval`` state.

The approval request (an SNS message) carries the task token. A reviewer approves or rejects with::

    aws lambda invoke --function-name <ApprovalFunction> --cli-binary-format raw-in-base64-out \
      --payload '{"token": "<token>", "decision": "approve", "reviewer": "alice", "reason": "looks good"}' out.json

``approve`` sends ``SendTaskSuccess`` (the pipeline then deploys); ``reject`` sends ``SendTaskFailure`` with
error ``ModelRejected`` (the pipeline marks the package Rejected). A token that is expired or already used
returns ``{"status": "closed"}`` with the reason instead of failing, so repeating a decision is harmless.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer

logger = Logger()
tracer = Tracer()
DECISIONS = ("approve", "reject")
#: SendTaskSuccess/SendTaskFailure (botocore's Step Functions model): taskToken 1-2048 characters, output at most
#: 262,144, error 256, cause 32,768 (rule stepfunctions.task-token-length).
TOKEN_MAX, OUTPUT_MAX, CAUSE_MAX = 2048, 262_144, 32_768
REVIEWER_MAX, REASON_MAX = 256, 500
_clients: dict[str, Any] = {}


def sfn():
    if "sfn" not in _clients:
        _clients["sfn"] = boto3.client("stepfunctions")
    return _clients["sfn"]


class MalformedApprovalError(ValueError):
    """The approval request is missing the token, the decision or the reviewer."""


def parse(event: Any) -> dict[str, str]:
    if isinstance(event, dict) and isinstance(event.get("body"), str):  # a Lambda function URL / API request
        try:
            event = json.loads(event["body"])
        except ValueError as exc:
            raise MalformedApprovalError("body must be JSON") from exc
    if not isinstance(event, dict):
        raise MalformedApprovalError(f"event must be an object, got: {type(event).__name__}")
    errors = []
    token = event.get("token")
    if not isinstance(token, str) or not 1 <= len(token) <= TOKEN_MAX:
        got = f"{len(token)} characters" if isinstance(token, str) else type(token).__name__
        errors.append(f"token: the task token from the approval message (1-{TOKEN_MAX} characters) is required, got: {got} (AWS rule stepfunctions.task-token-length)")
    decision = str(event.get("decision", "")).lower()
    if decision not in DECISIONS:
        errors.append(f"decision: must be one of {list(DECISIONS)}, got: {event.get('decision')!r}")
    reviewer = event.get("reviewer")
    if not isinstance(reviewer, str) or not reviewer.strip():
        errors.append("reviewer: who decides is required (it is recorded with the model package)")
    elif len(reviewer.strip()) > REVIEWER_MAX:
        errors.append(f"reviewer: at most {REVIEWER_MAX} characters, got: {len(reviewer.strip())}")
    reason = event.get("reason", "")
    if not isinstance(reason, (str, int, float)) or isinstance(reason, bool):
        errors.append(f"reason: must be text, got: {type(reason).__name__}")
    if errors:
        raise MalformedApprovalError("; ".join(errors))
    return {"token": token, "decision": decision, "reviewer": reviewer.strip(), "reason": str(reason)[:REASON_MAX]}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    req = parse(event)
    client = sfn()
    try:
        if req["decision"] == "approve":
            client.send_task_success(
                taskToken=req["token"],
                output=json.dumps({"decision": "Approved", "reviewer": req["reviewer"], "reason": req["reason"]})[:OUTPUT_MAX],
            )
        else:
            client.send_task_failure(
                taskToken=req["token"], error="ModelRejected", cause=f"rejected by {req['reviewer']}: {req['reason']}"[:CAUSE_MAX]
            )
    except (client.exceptions.TaskTimedOut, client.exceptions.TaskDoesNotExist, client.exceptions.InvalidToken) as exc:
        logger.warning("approval token is closed", extra={"error": str(exc)})
        return {"status": "closed", "reason": str(exc)}
    logger.info("approval sent", extra={"decision": req["decision"], "reviewer": req["reviewer"]})
    return {"status": "sent", "decision": req["decision"]}
