"""pipeline_lineage: the lock of an execution that ended at execution level (issue 12 item 7)."""

from __future__ import annotations

import json
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from tests.workflow.sfn_harness import _Context, load_handler

ARN = "arn:aws:states:us-east-1:123456789012:execution:retrain:images-v1"
EVENT = "Step Functions Execution Status Change"


@pytest.fixture()
def lineage():
    with mock_aws():
        ddb = boto3.resource("dynamodb", "us-east-1")
        table = ddb.create_table(TableName="lineage", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                                                 {"AttributeName": "sk", "KeyType": "RANGE"}],
                                 AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                       {"AttributeName": "sk", "AttributeType": "S"}],
                                 BillingMode="PAY_PER_REQUEST")
        h = load_handler("pipeline_lineage")
        with mock.patch.dict("os.environ", {"LINEAGE_TABLE": "lineage", "AWS_DEFAULT_REGION": "us-east-1"}):
            h._clients.clear()
            yield h, table
            h._clients.clear()


def _event(status: str, run_input: dict | str | None, arn: str = ARN) -> dict:
    text = run_input if isinstance(run_input, str) or run_input is None else json.dumps(run_input)
    return {"source": "aws.states", "detail-type": EVENT, "detail": {"executionArn": arn, "status": status, "input": text}}


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_execution_level_end_releases_only_its_own_lock(lineage, status):
    h, table = lineage
    table.put_item(Item={"pk": "lock#images", "sk": "lock", "owner": ARN, "expires_at": 1})
    out = h.handler(_event(status, {"dataset": "images", "version": "v1"}), _Context("t"))
    assert out == {"released": True, "lock": "lock#images", "status": status}
    assert "Item" not in table.get_item(Key={"pk": "lock#images", "sk": "lock"})
    record = table.get_item(Key={"pk": "run#images-v1", "sk": "run"})["Item"]
    assert record["execution_end"] == status and record["execution_arn"] == ARN


def test_another_runs_lock_is_kept(lineage):
    h, table = lineage
    table.put_item(Item={"pk": "lock#images", "sk": "lock", "owner": "arn:other", "expires_at": 1})
    out = h.handler(_event("TIMED_OUT", {"dataset": "images", "version": "v1"}), _Context("t"))
    assert out["released"] is False
    assert table.get_item(Key={"pk": "lock#images", "sk": "lock"})["Item"]["owner"] == "arn:other"


@pytest.mark.parametrize(("status", "run_input"), [("SUCCEEDED", {"dataset": "images"}), ("FAILED", "not json"),
                                                   ("FAILED", {"dataset": "Images!"}), ("FAILED", None), ("ABORTED", [1])])
def test_nothing_to_release(lineage, status, run_input):
    h, _ = lineage
    assert h.handler(_event(status, run_input), _Context("t")) == {"released": False, "reason": "no lock to release"}
