"""Retrain pipeline: the manual approval callback. Completes the waiting ``RequestApproval`` state.

The approval request (an SNS message on the pipeline's dedicated approval topic) carries the task token. The
function is reached through its Lambda function URL (AuthType ``AWS_IAM``): every request is SigV4-signed, and
Lambda puts the signer's identity in ``requestContext.authorizer.iam``. The reviewer recorded with the decision is
that identity (``userArn``), never a name from the request: ``mlinfra approve --url <ApprovalUrl>`` signs with the
caller's credentials::

    mlinfra approve --url https://<id>.lambda-url.<region>.on.aws/ --decision approve --reason "looks good" --token <token>

Body: ``{"token": "<task token>", "decision": "approve"|"reject", "reason": "..."}``. A ``reviewer`` field is
refused (400): who decides is who signed. An event without the function URL's IAM context (a direct ``Invoke``,
or a URL that is not ``AWS_IAM``) is refused (403), so no caller can name someone else as the reviewer.

``approve`` sends ``SendTaskSuccess`` (the pipeline then deploys); ``reject`` sends ``SendTaskFailure`` with
error ``ModelRejected`` (the pipeline marks the package Rejected). A token that is expired or already used
answers 409 ``{"status": "closed"}`` with the reason instead of failing, so repeating a decision is harmless.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger

logger = Logger()
DECISIONS = ("approve", "reject")
#: SendTaskSuccess/SendTaskFailure (botocore's Step Functions model): taskToken 1-2048 characters, output at most
#: 262,144, error 256, cause 32,768 (rule stepfunctions.task-token-length).
TOKEN_MAX, OUTPUT_MAX, CAUSE_MAX = 2048, 262_144, 32_768
#: IAM ARNs are at most 2048 characters; a function URL request body at most 6 MB (we need far less).
REVIEWER_MAX, REASON_MAX, BODY_MAX = 2048, 500, 16_384
_clients: dict[str, Any] = {}


def sfn():
    if "sfn" not in _clients:
        _clients["sfn"] = boto3.client("stepfunctions")
    return _clients["sfn"]


class MalformedApprovalError(ValueError):
    """The approval request is missing the token or the decision, or names a reviewer."""


class UnauthenticatedApprovalError(PermissionError):
    """The request did not come through the AWS_IAM function URL: there is no caller identity to record."""


def caller_arn(event: Any) -> str:
    """The SigV4 signer of a function URL request (rule lambda.function-url-iam-caller)."""
    iam = ((event.get("requestContext") or {}).get("authorizer") or {}).get("iam") if isinstance(event, dict) else None
    arn = iam.get("userArn") if isinstance(iam, dict) else None
    if not isinstance(arn, str) or not arn.startswith("arn:") or len(arn) > REVIEWER_MAX:
        raise UnauthenticatedApprovalError(
            "requestContext.authorizer.iam.userArn: missing; decisions are accepted only through the approval "
            "function URL (AuthType AWS_IAM, a SigV4-signed request: `mlinfra approve --url ...`), which records "
            "the signer as the reviewer")
    return arn


def parse(event: Any) -> dict[str, str]:
    """The decision of a function URL request: token, decision, reason, and the reviewer from the IAM context."""
    reviewer = caller_arn(event)
    body = event.get("body")
    if not isinstance(body, str) or not body:
        raise MalformedApprovalError("body: a JSON object {token, decision, reason} is required")
    if len(body) > BODY_MAX:
        raise MalformedApprovalError(f"body: at most {BODY_MAX} characters, got: {len(body)}")
    try:
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body, validate=True).decode()
        req = json.loads(body)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise MalformedApprovalError("body must be JSON") from exc
    if not isinstance(req, dict):
        raise MalformedApprovalError(f"body must be a JSON object, got: {type(req).__name__}")
    errors = []
    if "reviewer" in req:
        errors.append(f"reviewer: not accepted, got: {str(req['reviewer'])[:64]!r}; the reviewer recorded is the "
                      "IAM identity that signed the request")
    token = req.get("token")
    if not isinstance(token, str) or not 1 <= len(token) <= TOKEN_MAX:
        got = f"{len(token)} characters" if isinstance(token, str) else type(token).__name__
        errors.append(f"token: the task token from the approval message (1-{TOKEN_MAX} characters) is required, got: {got} (AWS rule stepfunctions.task-token-length)")
    decision = str(req.get("decision", "")).lower()
    if decision not in DECISIONS:
        errors.append(f"decision: must be one of {list(DECISIONS)}, got: {req.get('decision')!r}")
    reason = req.get("reason", "")
    if not isinstance(reason, (str, int, float)) or isinstance(reason, bool):
        errors.append(f"reason: must be text, got: {type(reason).__name__}")
    if errors:
        raise MalformedApprovalError("; ".join(errors))
    return {"token": token, "decision": decision, "reviewer": reviewer, "reason": str(reason)[:REASON_MAX]}


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        req = parse(event)
    except UnauthenticatedApprovalError as exc:
        logger.warning("approval refused: no IAM caller", extra={"error": str(exc)})
        return _response(403, {"status": "refused", "reason": str(exc)})
    except MalformedApprovalError as exc:
        return _response(400, {"status": "invalid", "reason": str(exc)})
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
        return _response(409, {"status": "closed", "reason": str(exc)})
    logger.info("approval sent", extra={"decision": req["decision"], "reviewer": req["reviewer"]})
    return _response(200, {"status": "sent", "decision": req["decision"], "reviewer": req["reviewer"]})
