"""Data lake smoke check: write into the landing zone, read it back, check encryption, versioning, BPA."""

from __future__ import annotations

import hashlib
import time

ORDER = 10


def run(ctx) -> list[str]:
    if not ctx.has_stack("data-lake"):
        return []
    outputs = ctx.outputs("data-lake")
    s3 = ctx.client("s3")
    bucket = outputs["LandingBucketName"]
    key = f"smoke/hello-{int(time.time())}.txt"
    body = b"mlinfra local smoke test\n"
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    got = s3.get_object(Bucket=bucket, Key=key)
    data = got["Body"].read()
    if data != body:
        raise AssertionError(f"read back {len(data)} bytes from s3://{bucket}/{key}, expected {len(body)}")
    lines = [f"wrote and read back s3://{bucket}/{key} (sha256 {hashlib.sha256(data).hexdigest()[:12]}...)"]

    sse = got.get("ServerSideEncryption")
    expected_sse = "aws:kms" if ctx.config.data_lake.encryption == "kms" else "AES256"
    if sse != expected_sse:
        raise AssertionError(f"object encryption is {sse!r}, expected {expected_sse!r}")
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    algo = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    lines.append(f"encryption: bucket default {algo}, object stored with {sse}")

    # moto applies only BucketEncryption and Tags of AWS::S3::Bucket. For versioning and public access, check
    # what the emulator holds AND what the deployed template asks for; report both, claim nothing more.
    template = _deployed_bucket_properties(ctx, bucket)
    want_versioning = template.get("VersioningConfiguration", {}).get("Status")
    if want_versioning != "Enabled":
        raise AssertionError(f"deployed template sets versioning {want_versioning!r}, expected 'Enabled'")
    versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status", "not set")
    lines.append(
        f"versioning: deployed template Enabled; emulator reports '{versioning}'"
        + ("" if versioning == "Enabled" else " (moto ignores VersioningConfiguration)")
    )
    want_bpa = template.get("PublicAccessBlockConfiguration", {})
    if not (len(want_bpa) == 4 and all(want_bpa.values())):
        raise AssertionError(f"deployed template public access block incomplete: {want_bpa}")
    try:
        emulated = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        state = "all four on" if all(emulated.values()) else f"{emulated}"
    except s3.exceptions.ClientError:
        state = "not set (moto ignores PublicAccessBlockConfiguration)"
    lines.append(f"public access block: deployed template all four on; emulator {state}")
    return lines


def _deployed_bucket_properties(ctx, bucket_name: str) -> dict:
    import json

    cfn = ctx.client("cloudformation")
    stack = ctx.config.stack_name("data-lake")
    physical = {
        r["PhysicalResourceId"]: r["LogicalResourceId"]
        for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    }
    body = cfn.get_template(StackName=stack)["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    return template["Resources"][physical[bucket_name]].get("Properties", {})
