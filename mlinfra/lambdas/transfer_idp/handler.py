"""Transfer Family custom identity provider: users stored in Secrets Manager.

Each user is one secret named ``<SECRET_PREFIX><username>`` holding JSON::

    {"password_hash": "pbkdf2_sha256$600000$<salt b64>$<hash b64>",   # optional (see hash_password)
     "public_keys": ["ssh-ed25519 AAAA..."],                          # optional
     "prefix": "partner-a/",                                           # the user's landing prefix (required)
     "read_only": false}

Transfer calls the function with ``{"username", "password", "protocol", "serverId", "sourceIp"}``. A password
login succeeds only when the PBKDF2 hash matches; a key login (empty or absent password) exists only for SFTP: it
returns the user's public keys and Transfer checks the key. FTP, FTPS and AS2 have no keys, so an empty password
there is denied (AWS Transfer Family custom identity provider docs: an empty password means a public-key login,
which only SFTP servers offer; ``SftpAuthenticationMethods`` applies to SFTP only). A password that is not a string (``false``, ``0``,
``[]``), a user record whose ``public_keys`` is not a list of strings, a stored hash with an iteration count
outside 1,000-10,000,000, and a user prefix with ``.``/``..``/``*`` segments or a leading ``_`` (``_quarantine/``
is the glue's) all deny. The answer on success carries the session role, a LOGICAL home directory
(``/`` -> ``/<bucket>/<prefix>``) and a session policy limited to that prefix. Every failure (unknown user,
wrong password, malformed request, unreadable secret) returns the same empty response ``{}`` after the same
amount of hashing work, so a caller cannot tell whether a user exists. Passwords are never logged.

Environment: SECRET_PREFIX, USER_ROLE_ARN, BUCKET, BUCKET_ARN.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

logger = Logger()

ITERATIONS = 600_000
_USER_RE = re.compile(r"^[\w][\w@.-]{2,99}$")
#: One or more segments of S3 safe characters, each starting with a letter or digit: no ``.``/``..``, no ``*``
#: (a policy wildcard), no leading ``_`` (reserved prefixes such as ``_quarantine/``). A copy of
#: ``mlinfra.domain.lake.USER_PREFIX_PATTERN`` (the handler ships alone; tests/unit/test_rule_homes.py compares them).
_PREFIX_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9!_.'()=-]*/)+$")
KEY_PROTOCOLS = ("SFTP",)  # the only protocol with public-key logins
PROTOCOLS = ("SFTP", "FTP", "FTPS", "AS2")
MIN_ITERATIONS, MAX_ITERATIONS = 1_000, 10_000_000  # outside: an unusable hash (no 0-cost, no denial of service)
DENY: dict[str, Any] = {}

_client = None


def set_client(client) -> None:
    global _client
    _client = client


def _secrets():
    global _client
    _client = _client or boto3.client("secretsmanager")
    return _client


def hash_password(password: str, *, iterations: int | None = None, salt: bytes | None = None) -> str:
    """The ``password_hash`` value to store for ``password``."""
    iterations = iterations or ITERATIONS
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", _utf8(password), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


_DUMMY: tuple[int, bytes, bytes] | None = None


def _dummy_parts() -> tuple[int, bytes, bytes]:
    """A fixed hash (computed once per container) checked when a user has no usable hash."""
    global _DUMMY
    if _DUMMY is None or _DUMMY[0] != ITERATIONS:
        salt = b"\0" * 16
        _DUMMY = (ITERATIONS, salt, hashlib.pbkdf2_hmac("sha256", b"unused", salt, ITERATIONS))
    return _DUMMY


def _dummy_hash() -> None:
    """Spend one password check's work, so every path of a login costs the same."""
    iterations, salt, _ = _dummy_parts()
    hashlib.pbkdf2_hmac("sha256", b"x", salt, iterations)


def _utf8(password: str) -> bytes:
    """UTF-8 bytes; a lone surrogate (not valid UTF-8) is kept as is, so it hashes (and fails) like any other."""
    return password.encode("utf-8", "surrogatepass")


def verify_password(password: str, stored: Any) -> bool:
    """Constant-time check; with no usable hash, still spends the same work on a dummy hash. Never raises."""
    try:
        if not isinstance(stored, str):
            raise TypeError(type(stored).__name__)
        scheme, iterations, salt, expected = stored.split("$")
        if scheme != "pbkdf2_sha256":
            raise ValueError(scheme)
        iterations_i = int(iterations)
        if not MIN_ITERATIONS <= iterations_i <= MAX_ITERATIONS:
            raise ValueError(f"iterations {iterations_i}")
        salt_b, expected_b = base64.b64decode(salt, validate=True), base64.b64decode(expected, validate=True)
        if not salt_b or len(expected_b) != 32:
            raise ValueError("salt or digest")
        usable = True
    except (ValueError, TypeError):
        (iterations_i, salt_b, expected_b), usable = _dummy_parts(), False
    digest = hashlib.pbkdf2_hmac("sha256", _utf8(password), salt_b, iterations_i)
    return hmac.compare_digest(digest, expected_b) and usable


def session_policy(bucket_arn: str, prefix: str, read_only: bool) -> str:
    objects = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"]
    if not read_only:
        objects += ["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"]
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListOwnPrefix", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}}},
            {"Sid": "OwnObjects", "Effect": "Allow", "Action": objects, "Resource": f"{bucket_arn}/{prefix}*"},
        ],
    })


def _load_user(username: str) -> dict[str, Any] | None:
    try:
        raw = _secrets().get_secret_value(SecretId=os.environ["SECRET_PREFIX"] + username)["SecretString"]
        user = json.loads(raw)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            logger.error("secret lookup failed", extra={"code": exc.response.get("Error", {}).get("Code")})
        return None
    except (KeyError, ValueError, TypeError):
        logger.error("user secret is not valid JSON")
        return None
    if not isinstance(user, dict) or not isinstance(user.get("prefix"), str) or not _PREFIX_RE.fullmatch(user["prefix"]):
        logger.error("user secret lacks a valid prefix")
        return None
    keys = user.get("public_keys", [])
    if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        logger.error("user secret: public_keys must be a list of strings")
        return None
    return user


def authenticate(event: Any) -> dict[str, Any]:
    """The Transfer Family response for one login request (``{}`` denies)."""
    if not isinstance(event, dict):
        _dummy_hash()
        return DENY
    username, password = event.get("username"), event.get("password")
    password = "" if password is None else password  # absent: a key login; false/0/[] are not passwords
    protocol = event.get("protocol")  # Transfer always sends it; absent: deny (fail closed)
    if (not isinstance(username, str) or not _USER_RE.fullmatch(username) or not isinstance(password, str)
            or protocol not in PROTOCOLS or (not password and protocol not in KEY_PROTOCOLS)):
        _dummy_hash()
        logger.info("login denied", extra={"reason": "malformed request or key login on a protocol without keys"})
        return DENY
    user = _load_user(username)
    keys = list((user or {}).get("public_keys") or [])
    if password:
        ok = verify_password(password, (user or {}).get("password_hash"))
        if not ok or user is None:
            logger.info("login denied", extra={"server": event.get("serverId"), "source_ip": event.get("sourceIp")})
            return DENY
    else:
        _dummy_hash()  # key logins do the same work as password logins
        if user is None or not keys:
            logger.info("login denied", extra={"server": event.get("serverId"), "source_ip": event.get("sourceIp")})
            return DENY
    prefix, bucket = user["prefix"], os.environ["BUCKET"]
    response = {
        "Role": os.environ["USER_ROLE_ARN"],
        "Policy": session_policy(os.environ["BUCKET_ARN"], prefix, bool(user.get("read_only"))),
        "HomeDirectoryType": "LOGICAL",
        "HomeDirectoryDetails": json.dumps([{"Entry": "/", "Target": f"/{bucket}/{prefix}"}]),
    }
    if not password:
        response["PublicKeys"] = keys
    logger.info("login accepted", extra={"username": username, "method": "password" if password else "key"})
    return response


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return authenticate(event)
