"""Closed sets are enums whose values are the service's (botocore's API models, offline), and a config-file
string converts to the member or fails naming the prop, the value and the allowed set (DESIGN.md 5)."""

from __future__ import annotations

import enum

import pytest

from mlinfra.constructs import datasync as ds
from mlinfra.constructs.batch_transform import BatchStrategy, SplitType
from mlinfra.constructs.firehose import Compression
from mlinfra.constructs.hyperpod import NodeRecovery
from mlinfra.constructs.retrain_pipeline import InputMode
from mlinfra.domain.api_model import service_model
from mlinfra.domain.choices import choice


def _values(service: str, shape: str) -> set[str]:
    return set(service_model(service).shape_for(shape).enum)


# (our enum, botocore service, shape): every value the API takes is a member, and nothing else.
EXACT = [
    (InputMode, "sagemaker", "TrainingInputMode"),
    (NodeRecovery, "sagemaker", "ClusterNodeRecovery"),
    (Compression, "firehose", "CompressionFormat"),
    (ds.NfsVersion, "datasync", "NfsVersion"),
    (ds.SmbVersion, "datasync", "SmbVersion"),
    (ds.VerifyMode, "datasync", "VerifyMode"),
    (ds.OverwriteMode, "datasync", "OverwriteMode"),
    (ds.PreserveDeletedFiles, "datasync", "PreserveDeletedFiles"),
    (ds.TransferMode, "datasync", "TransferMode"),
    (ds.ReportLevel, "datasync", "ReportLevel"),
    (SplitType, "sagemaker", "SplitType"),
    (BatchStrategy, "sagemaker", "BatchStrategy"),
]
# Deliberate subsets: task logging is never OFF; OUTPOSTS is not a lake storage class.
SUBSET = [
    (ds.LogLevel, "datasync", "LogLevel", {"OFF"}),
    (ds.S3StorageClass, "datasync", "S3StorageClass", {"OUTPOSTS"}),
]


@pytest.mark.parametrize("cls, service, shape", EXACT, ids=lambda x: getattr(x, "__name__", x))
def test_enum_values_are_the_api_models(cls: type[enum.Enum], service: str, shape: str) -> None:
    assert {m.value for m in cls} == _values(service, shape)


@pytest.mark.parametrize("cls, service, shape, left_out", SUBSET, ids=lambda x: getattr(x, "__name__", str(x)))
def test_enum_subsets_leave_out_only_what_they_mean_to(cls, service, shape, left_out) -> None:
    assert {m.value for m in cls} == _values(service, shape) - left_out


def test_a_config_string_converts_to_the_member_and_a_member_to_itself() -> None:
    assert choice(InputMode, "FastFile", "training.input_mode") is InputMode.FAST_FILE
    assert choice(InputMode, InputMode.PIPE, "training.input_mode") is InputMode.PIPE


def test_a_value_outside_the_set_names_prop_value_and_allowed_set() -> None:
    with pytest.raises(ValueError) as err:
        choice(InputMode, "Stream", "training.input_mode")
    assert str(err.value) == "training.input_mode must be one of 'File', 'FastFile', 'Pipe' (InputMode), got: 'Stream'"
