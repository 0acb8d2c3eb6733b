"""Transfer Family identity provider against moto Secrets Manager: good, bad and malformed logins."""

from __future__ import annotations

import json
import types

import boto3
import pytest
from moto import mock_aws

from mlinfra.lambdas.transfer_idp import handler as idp

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0bWxpbmZyYXRlc3RrZXlmb3J0cmFuc2Zlcmlk partner"
CTX = types.SimpleNamespace(function_name="idp", memory_limit_in_mb=128, invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:idp",
                            aws_request_id="r", log_group_name="g", log_stream_name="s", function_version="1")


@pytest.fixture()
def sm(monkeypatch):
    monkeypatch.setattr(idp, "ITERATIONS", 1000)  # fast tests; production uses 600,000
    for k, v in {"SECRET_PREFIX": "mlinfra/transfer/", "USER_ROLE_ARN": "arn:aws:iam::123456789012:role/u",
                 "BUCKET": "landing", "BUCKET_ARN": "arn:aws:s3:::landing"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="mlinfra/transfer/alice", SecretString=json.dumps(
            {"password_hash": idp.hash_password("correct horse"), "public_keys": [KEY], "prefix": "partner-a/"}))
        client.create_secret(Name="mlinfra/transfer/reader", SecretString=json.dumps(
            {"public_keys": [KEY], "prefix": "shared/", "read_only": True}))
        client.create_secret(Name="mlinfra/transfer/broken", SecretString="{not json")
        client.create_secret(Name="mlinfra/transfer/noprefix", SecretString=json.dumps({"password_hash": idp.hash_password("p")}))
        idp.set_client(client)
        yield client
        idp.set_client(None)


def login(username, password="", **extra):
    return idp.handler({"username": username, "password": password, "protocol": "SFTP", "serverId": "s-1",
                        "sourceIp": "10.0.0.1", **extra}, CTX)


def test_password_login_returns_role_mapping_and_policy(sm):
    out = login("alice", "correct horse")
    assert out["Role"] == "arn:aws:iam::123456789012:role/u"
    assert out["HomeDirectoryType"] == "LOGICAL"
    assert json.loads(out["HomeDirectoryDetails"]) == [{"Entry": "/", "Target": "/landing/partner-a/"}]
    policy = json.loads(out["Policy"])
    objects = policy["Statement"][1]
    assert objects["Resource"] == "arn:aws:s3:::landing/partner-a/*" and "s3:PutObject" in objects["Action"]
    assert not any("Delete" in a for a in objects["Action"])
    assert "PublicKeys" not in out


def test_key_login_returns_public_keys(sm):
    out = login("alice")
    assert out["PublicKeys"] == [KEY]


def test_read_only_user_gets_no_write(sm):
    out = login("reader")
    actions = json.loads(out["Policy"])["Statement"][1]["Action"]
    assert "s3:PutObject" not in actions and "s3:GetObject" in actions


def test_wrong_password_and_unknown_user_look_the_same(sm, monkeypatch):
    calls = []
    real = idp.hashlib.pbkdf2_hmac
    monkeypatch.setattr(idp.hashlib, "pbkdf2_hmac", lambda *a: calls.append(1) or real(*a))
    idp._dummy_parts()
    calls.clear()
    wrong = login("alice", "wrong")
    n_wrong = len(calls)
    calls.clear()
    unknown = login("mallory", "wrong")
    n_unknown = len(calls)
    assert wrong == unknown == {}
    assert n_wrong == n_unknown == 1  # the same hashing work either way
    calls.clear()
    assert login("mallory") == {} and len(calls) == 1  # key login of an unknown user


@pytest.mark.parametrize("event", [None, "x", {}, {"username": ""}, {"username": "../../etc", "password": "p"},
                                   {"username": "alice", "password": 123}, {"username": ["alice"]}])
def test_malformed_requests_are_denied(sm, event):
    assert idp.handler(event, CTX) == {}


def test_broken_or_incomplete_secrets_are_denied(sm):
    assert login("broken", "x") == {}
    assert login("noprefix", "p") == {}


def test_user_without_password_cannot_log_in_with_one(sm):
    assert login("reader", "anything") == {}
