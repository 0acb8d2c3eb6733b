"""Create-only S3 writes (``If-None-Match: *``) on any botocore the Lambda runtime may ship.

The handlers ship only their own source and run on the runtime's boto3/botocore, which may predate the
``IfNoneMatch`` member (PutObject/CompleteMultipartUpload: 2024, after botocore 1.34.0; CopyObject: botocore 1.41).
An old botocore is simulated by removing the member from the client's loaded S3 model: the client then refuses
the parameter (ParamValidationError), as the old botocore did. The handlers must still send the header (S3 honours
it server-side whatever the client's model), so their writes stay atomic."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from mlinfra.lambdas.datasync_promote import handler as promote
from mlinfra.lambdas.landing_glue import handler as glue
from tests.handlers.test_landing_glue import RAW, aws, context, files, put, sha, versions  # noqa: F401 (fixture)

CONDITIONAL_OPS = ("PutObject", "CopyObject", "CompleteMultipartUpload")


def drop_if_none_match(client: Any) -> None:
    """The client's loaded S3 model without ``IfNoneMatch`` on the conditional writes (botocore 1.34.0's models:
    tests/handlers/data/botocore_1_34_0_members.json). Per client: other clients keep the full model."""
    for op in CONDITIONAL_OPS:
        client.meta.service_model.operation_model(op).input_shape.members.pop("IfNoneMatch", None)


def record_headers(client: Any) -> list[tuple[str, str | None]]:
    """(operation, If-None-Match header) of every S3 request ``client`` sends over HTTP (moto in-process)."""
    sent: list[tuple[str, str | None]] = []
    for op in CONDITIONAL_OPS + ("PutObjectTagging", "CreateMultipartUpload", "UploadPartCopy"):
        client.meta.events.register(f"before-send.s3.{op}",
                                    lambda request, op=op, **_: sent.append((op, request.headers.get("If-None-Match"))))
    return sent


def header(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def test_the_simulated_old_model_refuses_the_parameter(aws):
    """The simulation is faithful: without the member, passing ``IfNoneMatch`` fails in the client."""
    drop_if_none_match(aws.s3)
    with pytest.raises(ParamValidationError, match="IfNoneMatch"):
        aws.s3.put_object(Bucket=RAW, Key="k", Body=b"x", IfNoneMatch="*")


def test_on_an_old_botocore_the_glue_sends_the_header_and_stays_create_only(aws, monkeypatch):
    """CopyObject (a file), CompleteMultipartUpload (a file above the single-copy limit) and PutObject (the ready
    marker) carry ``If-None-Match: *`` although the model lacks the member; unconditional calls on the same client
    (the test's own uploads, the tagging) do not; a redelivery is refused by S3 (moto honours the header on PutObject
    and CompleteMultipartUpload; on CopyObject moto ignores it, tests/handlers/faults.py emulates S3's 412)."""
    drop_if_none_match(aws.s3)
    sent = record_headers(aws.s3)
    monkeypatch.setattr(glue, "SINGLE_COPY_LIMIT", 1024)
    monkeypatch.setattr(glue, "MULTIPART_PART_BYTES", 5 * 1024 * 1024)
    small, big = b"a,b\n", b"x" * (6 * 1024 * 1024)
    manifest = {"files": [{"path": "a.csv", "sha256": sha(small)}, {"path": "big.csv", "sha256": sha(big)}]}
    first = put(aws, "images/old/a.csv", small)
    assert glue.handler(first, context())["outcome"] == "promoted"  # no ParamValidationError
    glue.handler(put(aws, "images/old/_manifest.json", json.dumps(manifest).encode(), "application/json"), context())
    assert glue.handler(put(aws, "images/old/big.csv", big), context())["ready"] is True
    conditional = {(op, header(h)) for op, h in sent if op in CONDITIONAL_OPS}
    assert conditional == {("CopyObject", "*"), ("CompleteMultipartUpload", "*"), ("PutObject", None),
                           ("PutObject", "*")}  # PutObject None: the test's uploads to landing
    assert [header(h) for op, h in sent if op in ("PutObjectTagging", "CreateMultipartUpload", "UploadPartCopy")] \
        == [None] * len([1 for op, _ in sent if op in ("PutObjectTagging", "CreateMultipartUpload", "UploadPartCopy")])
    # the same delivery again: the copy is refused (412), nothing is written twice
    assert glue.process_event(first, glue.Settings.from_env())["outcome"] in ("duplicate", "promoted")
    assert len([v for v in versions(aws, RAW)[0] if v["Key"] == "dataset=images/version=old/a.csv"]) == 1
    assert len(files(aws)) == 2


def test_on_an_old_botocore_two_concurrent_deliveries_leave_one_raw_version(aws):
    """The same event delivered twice, interleaved at every call: both copies are sent, one is refused (412, the
    header emulated for CopyObject as moto ignores it), raw holds one version and the catalog names it."""
    from tests.handlers.faults import Scheduler
    from tests.handlers.test_landing_glue import _hook

    ev = put(aws, "images/d1/a.csv", b"1,2\n")
    choices = [0, 1] * 20
    scheduler = Scheduler(lambda n: choices.pop(0) % n if choices else 0)
    faults = _hook(aws, None, scheduler)
    s3 = glue._clients.s3
    drop_if_none_match(s3)
    sent = record_headers(s3)
    settings = glue.Settings.from_env()
    assert scheduler.run([lambda: glue.process_event(ev, settings)] * 2) == [None, None]
    assert faults.calls.count(("s3", "CopyObject")) == 2  # both deliveries copied ...
    assert [header(h) for op, h in sent if op == "CopyObject"] == ["*"]  # ... the second was refused (412)
    raw_versions = versions(aws, RAW)[0]
    (item,) = files(aws)
    assert len(raw_versions) == 1 and item["raw_version_id"]["S"] == raw_versions[0]["VersionId"]


def test_on_an_old_botocore_a_second_write_of_the_key_is_refused_by_s3(aws):
    """moto answers the header itself on PutObject and CompleteMultipartUpload (412 PreconditionFailed)."""
    drop_if_none_match(aws.s3)
    glue._write_once(aws.s3, "PutObject", "put_object", Bucket=RAW, Key="once", Body=b"1")
    with pytest.raises(ClientError) as err:
        glue._write_once(aws.s3, "PutObject", "put_object", Bucket=RAW, Key="once", Body=b"2")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    upload = aws.s3.create_multipart_upload(Bucket=RAW, Key="once")["UploadId"]
    part = aws.s3.upload_part(Bucket=RAW, Key="once", UploadId=upload, PartNumber=1, Body=b"3")["ETag"]
    with pytest.raises(ClientError) as err:
        glue._write_once(aws.s3, "CompleteMultipartUpload", "complete_multipart_upload", Bucket=RAW, Key="once",
                         UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part}]})
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    assert aws.s3.get_object(Bucket=RAW, Key="once")["Body"].read() == b"1"
    aws.s3.put_object(Bucket=RAW, Key="once", Body=b"4")  # an unconditional call after them stays unconditional
    assert aws.s3.get_object(Bucket=RAW, Key="once")["Body"].read() == b"4"


def test_with_the_current_model_the_parameter_is_passed(aws):
    """Where the model has the member, ``IfNoneMatch="*"`` is the parameter, as before; no handler is added."""
    params: list[dict] = []
    aws.s3.meta.events.register("before-parameter-build.s3.PutObject", lambda **kw: params.append(dict(kw["params"])))
    sent = record_headers(aws.s3)
    glue._write_once(aws.s3, "PutObject", "put_object", Bucket=RAW, Key="k", Body=b"1")
    assert params[-1]["IfNoneMatch"] == "*" and [header(h) for _, h in sent] == ["*"]
    handlers = list(aws.s3.meta.events._emitter._handlers.prefix_search("before-call.s3.PutObject"))
    assert glue._send_if_none_match not in handlers


def test_on_an_old_botocore_datasync_promote_writes_its_manifest_once(aws, monkeypatch):
    """datasync_promote's manifest: the header, atomic (no HeadObject first), refused by S3 the second time."""
    drop_if_none_match(aws.s3)
    sent = record_headers(aws.s3)
    heads: list = []
    aws.s3.meta.events.register("before-call.s3.HeadObject", lambda **_: heads.append(1))
    monkeypatch.setattr(promote, "clients", promote.Clients(s3=aws.s3))
    assert promote._put_once(RAW, "manifest.json", b"{}") is True
    assert promote._put_once(RAW, "manifest.json", b"[]") is False
    assert [header(h) for op, h in sent if op == "PutObject"] == ["*", "*"] and heads == []
    assert aws.s3.get_object(Bucket=RAW, Key="manifest.json")["Body"].read() == b"{}"


@pytest.mark.parametrize("name", ["_models_member", "_send_if_none_match", "_write_once"])
def test_the_handlers_copies_of_the_write_once_helper_are_identical(name):
    """Handlers import no other handler (import-linter): datasync_promote keeps a copy of the glue's helper."""
    assert inspect.getsource(getattr(promote, name)) == inspect.getsource(getattr(glue, name))
    assert promote._IF_NONE_MATCH.name == glue._IF_NONE_MATCH.name
