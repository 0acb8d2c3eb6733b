"""Any app's S3 buckets (ORDER 5): write an object into every bucket the deploy created, read it back, delete it,
and report each bucket's default encryption as the emulator holds it. Applies to any CDK app with buckets."""

from __future__ import annotations

import hashlib

ORDER = 5
NEEDS_CONFIG = False


def run(ctx) -> list[str]:
    buckets = [r.detail for _, r in ctx.created("AWS::S3::Bucket")]
    if not buckets:
        return []
    s3 = ctx.client("s3")
    body = b"mlinfra local smoke test\n"
    lines = []
    for bucket in buckets:
        key = "mlinfra-smoke/hello.txt"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if data != body:
            raise AssertionError(f"s3://{bucket}/{key}: read back {len(data)} bytes, wrote {len(body)}")
        s3.delete_object(Bucket=bucket, Key=key)
        try:
            rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            algo = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        except s3.exceptions.ClientError:
            algo = "none"
        lines.append(f"s3://{bucket}: wrote, read back (sha256 {hashlib.sha256(data).hexdigest()[:12]}...) and "
                     f"deleted an object; default encryption {algo}")
    return lines
