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


# --- issue 19 item 6: authentication fails closed ------------------------------------------------------------------


@pytest.fixture()
def work(monkeypatch):
    """Counts PBKDF2 computations: every path of a login must cost exactly one."""
    calls = []
    real = idp.hashlib.pbkdf2_hmac
    idp._dummy_parts()
    monkeypatch.setattr(idp.hashlib, "pbkdf2_hmac", lambda *a: calls.append(a[3]) or real(*a))
    return calls


@pytest.mark.parametrize("protocol", ["FTP", "FTPS", "AS2"])
def test_empty_password_is_not_a_key_login_outside_sftp(sm, work, protocol):
    assert login("alice", "", protocol=protocol) == {}
    assert idp.handler({"username": "alice", "protocol": protocol, "serverId": "s", "sourceIp": "1"}, CTX) == {}
    assert len(work) == 2


def test_a_missing_or_unknown_protocol_is_denied(sm, work):
    assert idp.handler({"username": "alice", "password": "correct horse"}, CTX) == {}
    assert login("alice", "correct horse", protocol="HTTP") == {}
    assert len(work) == 2


@pytest.mark.parametrize("password", [False, 0, [], {}, 0.0, True])
def test_a_password_that_is_not_a_string_is_denied_not_a_key_login(sm, work, password):
    assert login("alice", password) == {}
    assert len(work) == 1


def test_a_password_with_a_lone_surrogate_is_denied_without_raising(sm, work):
    assert login("alice", "pass\ud800word") == {}
    assert len(work) == 1


@pytest.mark.parametrize("record", [
    {"public_keys": None, "prefix": "p/"},
    {"public_keys": KEY, "prefix": "p/"},
    {"public_keys": [KEY, 3], "prefix": "p/"},
    {"password_hash": "pbkdf2_sha256$0$AAAA$AAAA", "prefix": "p/"},
    {"password_hash": "pbkdf2_sha256$-5$AAAA$AAAA", "prefix": "p/"},
    {"password_hash": "pbkdf2_sha256$99999999999$AAAA$AAAA", "prefix": "p/"},
    {"password_hash": "pbkdf2_sha256$1000$!!$AAAA", "prefix": "p/"},
    {"password_hash": ["pbkdf2_sha256"], "prefix": "p/"},
    {"password_hash": None, "public_keys": [], "prefix": "p/"},
])
@pytest.mark.parametrize("password", ["x", ""])
def test_broken_user_records_deny_with_one_hash_of_work(sm, work, record, password):
    sm.create_secret(Name="mlinfra/transfer/odd", SecretString=json.dumps(record))
    assert login("odd", password) == {}
    assert len(work) == 1 and all(n <= idp.MAX_ITERATIONS for n in work)


@pytest.mark.parametrize("prefix", ["../", "a/../", "*/", "a/*/", "_quarantine/", "./", "a//", "/a/", "a", ""])
def test_dangerous_prefixes_are_refused_not_turned_into_a_policy(sm, work, prefix):
    sm.create_secret(Name="mlinfra/transfer/pfx", SecretString=json.dumps(
        {"password_hash": idp.hash_password("pw"), "public_keys": [KEY], "prefix": prefix}))
    assert login("pfx", "pw") == {} and login("pfx") == {}


@pytest.mark.parametrize("prefix", ["partner-a/", "a/b.c/", "team_1/in/"])
def test_ordinary_prefixes_still_work(sm, prefix):
    sm.create_secret(Name="mlinfra/transfer/ok1", SecretString=json.dumps(
        {"password_hash": idp.hash_password("pw"), "prefix": prefix}))
    assert json.loads(login("ok1", "pw")["HomeDirectoryDetails"])[0]["Target"] == f"/landing/{prefix}"
