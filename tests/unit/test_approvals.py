"""`mlinfra approve`: the decision is SigV4-signed with the caller's credentials and sent to the approval function
URL, whose REAL handler records the signer (not a name the caller chose) as the reviewer."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mlinfra import approvals
from mlinfra.cli import main

CREDS = Credentials("AKIDREVIEWER", "secret-key-of-the-reviewer", "session-token-1")
SIGNER = "arn:aws:sts::123456789012:assumed-role/Reviewer/alice"
_AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9]+)"
                      r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$")


class FakeFunctionUrl:
    """An AWS_IAM function URL on 127.0.0.1: it VERIFIES the SigV4 signature (service lambda) with the key of the
    access key id in the request, as Lambda does, then runs the REAL approval handler with the signer's identity in
    requestContext.authorizer.iam (or answers 403 like Lambda on a missing or bad signature)."""

    def __init__(self, keys: dict[str, tuple[Credentials, str]]):
        from tests.workflow.sfn_harness import _Context, load_handler

        self.module = load_handler("pipeline_approval")
        self.sfn = mock.MagicMock()
        for name in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
            setattr(self.sfn.exceptions, name, type(name, (Exception,), {}))
        self.module._clients["sfn"] = self.sfn
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"headers": dict(self.headers.items()), "body": body})
                arn = fake.verify(self, body, keys)
                if arn is None:
                    status, payload = 403, json.dumps({"Message": "Forbidden"})
                else:
                    event = {"version": "2.0", "rawPath": self.path, "body": body.decode(), "isBase64Encoded": False,
                             "requestContext": {"http": {"method": "POST"}, "authorizer": {"iam": {"userArn": arn}}}}
                    out = fake.module.handler(event, _Context("approval"))
                    status, payload = out["statusCode"], out["body"]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verify(self, handler: BaseHTTPRequestHandler, body: bytes, keys: dict) -> str | None:
        match = _AUTH_RE.match(handler.headers.get("Authorization", ""))
        if not match or match["service"] != "lambda" or match["akid"] not in keys:
            return None
        creds, arn = keys[match["akid"]]
        signed = match["signed"].split(";")
        headers = {name: handler.headers[name] for name in signed if name != "host"}
        request = AWSRequest(method="POST", url=f"http://{handler.headers['Host']}{handler.path}", data=body, headers=headers)
        request.context["timestamp"] = handler.headers["X-Amz-Date"]
        auth = SigV4Auth(creds, "lambda", match["region"])
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        return arn if expected == match["sig"] else None

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Session:
    def __init__(self, creds=CREDS, region="us-east-1"):
        self.creds, self.region_name = creds, region

    def get_credentials(self):
        return self.creds


@pytest.fixture
def url_fn():
    with FakeFunctionUrl({"AKIDREVIEWER": (CREDS, SIGNER)}) as fake:
        yield fake


def test_the_request_is_sigv4_signed_for_lambda_and_the_signer_is_the_reviewer(url_fn):
    answer = approvals.decide(url_fn.url, "tok-1", "approve", "beats prod", session=Session())
    assert answer == {"status": "sent", "decision": "approve", "reviewer": SIGNER}
    (request,) = url_fn.requests
    match = _AUTH_RE.match(request["headers"]["Authorization"])
    assert match and match["service"] == "lambda" and match["region"] == "us-east-1" and match["akid"] == "AKIDREVIEWER"
    assert request["headers"]["X-Amz-Security-Token"] == "session-token-1"
    assert "reviewer" not in json.loads(request["body"])
    call = url_fn.sfn.send_task_success.call_args.kwargs
    assert call["taskToken"] == "tok-1"
    assert json.loads(call["output"]) == {"decision": "Approved", "reviewer": SIGNER, "reason": "beats prod"}


def test_reject_sends_task_failure_naming_the_signer(url_fn):
    approvals.decide(url_fn.url, "tok-2", "reject", "worse on holdout", session=Session())
    url_fn.sfn.send_task_failure.assert_called_once_with(
        taskToken="tok-2", error="ModelRejected", cause=f"rejected by {SIGNER}: worse on holdout")


def test_a_wrong_key_fails_the_signature_check(url_fn):
    forged = Credentials("AKIDREVIEWER", "not-the-secret", "session-token-1")
    with pytest.raises(RuntimeError, match="answered 403"):
        approvals.decide(url_fn.url, "tok-3", "approve", session=Session(forged))
    assert not url_fn.sfn.method_calls


def test_closed_token_is_reported_not_raised(url_fn):
    url_fn.sfn.send_task_success.side_effect = url_fn.sfn.exceptions.TaskTimedOut("expired")
    assert approvals.decide(url_fn.url, "tok-3", "approve", session=Session())["status"] == "closed"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"decision": "maybe"}, "decision must be one of \\['approve', 'reject'\\], got: 'maybe'"),
        ({"token": ""}, "token must be the task token"),
        ({"url": "http://approvals.example.com/"}, "url must be the approval function URL"),
    ],
)
def test_bad_arguments_are_refused_before_any_call(url_fn, kwargs, message):
    args = {"url": url_fn.url, "token": "t", "decision": "approve", **kwargs}
    with pytest.raises(ValueError, match=message):
        approvals.decide(session=Session(), **args)
    assert not url_fn.requests


def test_region_comes_from_the_function_url():
    seen = {}

    def fake_sign(url, body, credentials, region):
        seen["region"] = region
        raise RuntimeError("stop")

    with mock.patch.object(approvals, "signed_request", fake_sign), pytest.raises(RuntimeError, match="stop"):
        approvals.decide("https://abcdef123.lambda-url.eu-west-1.on.aws/", "t", "approve", session=Session(region="us-east-1"))
    assert seen["region"] == "eu-west-1"


def test_function_name_is_resolved_with_get_function_url_config():
    client = mock.MagicMock()
    client.get_function_url_config.return_value = {"FunctionUrl": "https://abc.lambda-url.us-east-1.on.aws/", "AuthType": "AWS_IAM"}
    assert approvals.function_url("fn", client) == "https://abc.lambda-url.us-east-1.on.aws/"
    client.get_function_url_config.assert_called_once_with(FunctionName="fn")
    client.get_function_url_config.return_value = {"FunctionUrl": "https://abc.lambda-url.us-east-1.on.aws/", "AuthType": "NONE"}
    with pytest.raises(ValueError, match="must be AWS_IAM"):
        approvals.function_url("fn", client)


def test_cli_signs_through_function_lookup(url_fn, monkeypatch, capsys):
    monkeypatch.setattr(approvals, "function_url", lambda name: url_fn.url)
    real = approvals.decide
    monkeypatch.setattr(approvals, "decide", lambda *a, **k: real(*a, session=Session(), **k))
    assert main(["approve", "--function", "fn", "--token", "t", "--decision", "approve", "--reason", "ok"]) == 0
    assert SIGNER in capsys.readouterr().out


def test_cli_help_and_usage_errors(capsys):
    assert main(["approve", "--help"]) == 0
    assert "ApprovalUrl" in capsys.readouterr().out
    assert main(["approve", "--url", "https://x.lambda-url.us-east-1.on.aws/", "--token", "t", "--decision", "maybe"]) == 2
    # the reviewer is whoever signs: naming one is refused
    assert main(["approve", "--url", "https://x.lambda-url.us-east-1.on.aws/", "--token", "t", "--decision", "approve",
                 "--reviewer", "the-cto"]) == 2
    assert "--reviewer is no longer accepted" in capsys.readouterr().err


def test_cli_closed_token_exits_1(monkeypatch, capsys):
    monkeypatch.setattr(approvals, "decide", lambda *a, **k: {"status": "closed", "reason": "TaskTimedOut"})
    assert main(["approve", "--url", "https://x.lambda-url.us-east-1.on.aws/", "--token", "t", "--decision", "approve"]) == 1
    assert "closed" in capsys.readouterr().out
