"""BatchTransform's props: enums, the preprocessing step and the limits and name rules it validates against."""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

MAX_PAYLOAD_MB = 100
#: The completion markers' folder under the input prefix (the lake's ``_ready/`` convention).
READY_MARKER_DIR = "_ready/"
BATCH_RE = re.compile(r"^[A-Za-z0-9._=-]{1,128}$")
#: Lowercase only: the prefix names jobs, models and S3 output folders alike (one spelling everywhere).
JOB_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,19}$")
#: botocore's EntityName pattern (ModelPackageGroupName).
GROUP_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class SplitType(enum.Enum):
    NONE = "None"
    LINE = "Line"
    RECORD_IO = "RecordIO"
    TF_RECORD = "TFRecord"


class BatchStrategy(enum.Enum):
    MULTI_RECORD = "MultiRecord"
    SINGLE_RECORD = "SingleRecord"


@dataclasses.dataclass(frozen=True)
class ProcessingStep:
    """Optional preprocessing before the transform (a SageMaker Processing job).

    :param image_uri: processing image. :param entrypoint: container entrypoint (e.g. ``["python3", "/opt/ml/code/pre.py"]``).
    :param instance_type: ``ml.*``. :default: ml.m5.xlarge
    :param instance_count: :default: 1
    :param output_prefix: where processed data lands in the output bucket (the transform reads it).
        :default: "batch-inference/processed/"
    :param role: the processing job's role (passed with iam:PassRole). :default: a new role
    :param max_runtime: :default: 1 hour
    """

    image_uri: str
    entrypoint: Sequence[str]
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    output_prefix: str = "batch-inference/processed/"
    role: iam.IRole | None = None
    max_runtime: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(1))
