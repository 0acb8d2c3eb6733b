"""`mlinfra approve`: argument checks, and the decision reaching the approval function's real handler."""

from __future__ import annotations

import io
import json

import pytest

from mlinfra import approvals
from mlinfra.cli import main


class FakeLambda:
    """Runs the REAL approval handler in-process, as Lambda would, with a recording Step Functions client."""

    def __init__(self):
        from unittest import mock

        from tests.workflow.sfn_harness import _Context, load_handler

        self.module = load_handler("pipeline_approval")
        self.sfn = mock.MagicMock()
        for name in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
            setattr(self.sfn.exceptions, name, type(name, (Exception,), {}))
        self.module._clients["sfn"] = self.sfn
        self.context = _Context("approval")

    def invoke(self, FunctionName, Payload):
        try:
            answer = self.module.handler(json.loads(Payload), self.context)
        except self.module.MalformedApprovalError as exc:
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(
                {"errorType": "MalformedApprovalError", "errorMessage": str(exc)}).encode())}
        return {"Payload": io.BytesIO(json.dumps(answer).encode())}


def test_approve_sends_task_success():
    fake = FakeLambda()
    answer = approvals.decide("fn", "tok-1", "approve", "alice", "beats prod", client=fake)
    assert answer == {"status": "sent", "decision": "approve"}
    fake.sfn.send_task_success.assert_called_once()
    call = fake.sfn.send_task_success.call_args.kwargs
    assert call["taskToken"] == "tok-1"
    assert json.loads(call["output"]) == {"decision": "Approved", "reviewer": "alice", "reason": "beats prod"}
    fake.sfn.send_task_failure.assert_not_called()


def test_reject_sends_task_failure_with_reason():
    fake = FakeLambda()
    approvals.decide("fn", "tok-2", "reject", "bob", "worse on holdout", client=fake)
    fake.sfn.send_task_failure.assert_called_once_with(
        taskToken="tok-2", error="ModelRejected", cause="rejected by bob: worse on holdout")
    fake.sfn.send_task_success.assert_not_called()


def test_closed_token_is_reported_not_raised():
    fake = FakeLambda()
    fake.sfn.send_task_success.side_effect = fake.sfn.exceptions.TaskTimedOut("expired")
    assert approvals.decide("fn", "tok-3", "approve", "carol", client=fake)["status"] == "closed"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"decision": "maybe"}, "decision must be one of \\['approve', 'reject'\\], got: 'maybe'"),
        ({"token": ""}, "token must be the task token"),
        ({"reviewer": "  "}, "reviewer must name who decides"),
    ],
)
def test_bad_arguments_are_refused_before_any_call(kwargs, message):
    args = {"function_name": "fn", "token": "t", "decision": "approve", "reviewer": "r", **kwargs}
    fake = FakeLambda()
    with pytest.raises(ValueError, match=message):
        approvals.decide(client=fake, **args)
    assert not fake.sfn.method_calls


def test_function_error_is_reported():
    class Failing:
        def invoke(self, FunctionName, Payload):
            return {"FunctionError": "Unhandled",
                    "Payload": io.BytesIO(b'{"errorType": "AccessDenied", "errorMessage": "no"}')}

    with pytest.raises(RuntimeError, match="fn failed: AccessDenied: no"):
        approvals.decide("fn", "t", "approve", "r", client=Failing())


def test_cli_help_and_usage_errors(capsys):
    assert main(["approve", "--help"]) == 0
    assert "ApprovalFunctionName" in capsys.readouterr().out
    assert main(["approve", "--function", "f", "--token", "t", "--decision", "maybe", "--reviewer", "r"]) == 2


def test_cli_closed_token_exits_1(monkeypatch, capsys):
    monkeypatch.setattr(approvals, "decide", lambda *a, **k: {"status": "closed", "reason": "TaskTimedOut"})
    assert main(["approve", "--function", "f", "--token", "t", "--decision", "approve", "--reviewer", "r"]) == 1
    assert "closed" in capsys.readouterr().out
