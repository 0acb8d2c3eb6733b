"""The ingestion smoke plug-in, run against moto in-process with a small fake context."""

from __future__ import annotations

import types

import boto3
import pytest
from moto import mock_aws

from mlinfra.local_aws.smoke import ingestion as smoke


@pytest.fixture()
def ctx(local_config):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("landing", "raw"):
            s3.create_bucket(Bucket=bucket)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="catalog", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "dataset", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "dataset", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        )
        outputs = {"data-lake": {"LandingBucketName": "landing", "RawBucketName": "raw"},
                   "ingestion": {"CatalogTableName": "catalog", "GlueQueueUrl": "https://sqs/q"}}
        yield types.SimpleNamespace(
            client=lambda name: boto3.client(name, region_name="us-east-1"),
            outputs=lambda suffix: outputs[suffix], config=local_config, endpoint_url=None,
        )


def test_smoke_promotes_and_catalogues(ctx):
    assert smoke.ORDER == 20
    lines = smoke.run(ctx)
    assert any("promoted to s3://raw/dataset=" in l for l in lines)
    assert any("in-process" in l for l in lines)
    raw = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="raw")["Contents"]
    assert len([o for o in raw if "/version=" in o["Key"]]) == 2
    assert len([o for o in raw if "/_ready/" in o["Key"]]) == 1  # the glue's ready marker


def test_smoke_fails_clearly_without_outputs(ctx):
    ctx.outputs = lambda suffix: {}
    with pytest.raises(RuntimeError, match="missing stack outputs"):
        smoke.run(ctx)
