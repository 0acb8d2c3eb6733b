"""The landing glue's AWS side in moto (call inside ``mock_aws``): versioned buckets and the dataset catalog."""

from __future__ import annotations

from typing import Any

import boto3

from tests.handlers.faults import Faults


def glue_lake(table: str, *buckets: str) -> tuple[Any, Any]:
    """An S3 client with the conditional-copy emulation (``Faults``), versioned ``buckets`` and the catalog ``table``
    (partition key ``dataset``, sort key ``sk``). Returns ``(s3, dynamodb)``."""
    s3 = Faults(s3_probe=boto3.client("s3", region_name="us-east-1")).attach(boto3.client("s3", region_name="us-east-1"))
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "dataset", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "dataset", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    )
    return s3, ddb
