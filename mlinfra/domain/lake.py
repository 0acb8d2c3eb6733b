"""The data lake's domain: zones, encryption choices, lifecycles and the key rules (no ``aws_cdk`` import).

One home for each rule the configuration, the constructs, the handlers and the tests share:

- the zones, in the order data flows through them (:class:`Zone`, :data:`ZONES`);
- the lake's encryption choices (:class:`LakeEncryption`);
- a zone's object lifecycle (:class:`Lifecycle`), its S3 rules (:func:`lifecycle_errors`) and the built-in
  defaults per zone (:func:`default_lifecycle`);
- the S3 key-prefix rule (:data:`S3_PREFIX_PATTERN`, :func:`prefix_error`);
- the dataset-name rules (:func:`dataset_name_error`, :func:`retrainable_dataset_error`).

A handler shipped alone (its folder is the Lambda asset) keeps a copy of the pattern it needs; a test checks the
copy against the one here.
"""

from __future__ import annotations

import dataclasses
import enum
import re

__all__ = [
    "Zone",
    "ZONES",
    "LakeEncryption",
    "Lifecycle",
    "lifecycle_errors",
    "default_lifecycle",
    "DEFAULT_LIFECYCLES",
    "S3_PREFIX_PATTERN",
    "prefix_error",
    "USER_PREFIX_PATTERN",
    "user_prefix_error",
    "DATASET_NAME_PATTERN",
    "RETRAINABLE_DATASET_PATTERN",
    "dataset_name_error",
    "retrainable_dataset_error",
    "parse_lake_target",
    "lake_target_errors",
]


class Zone(enum.StrEnum):
    """A zone of the lake (one bucket each). A ``str``: ``Zone.RAW == "raw"``."""

    LANDING = "landing"
    RAW = "raw"
    CURATED = "curated"
    FEATURES = "features"
    MODELS = "models"
    ARTIFACTS = "artifacts"


#: The lake's zones, in the order data flows through them.
ZONES: tuple[str, ...] = tuple(z.value for z in Zone)


class LakeEncryption(enum.StrEnum):
    """How the zone buckets are encrypted. A ``str``: ``LakeEncryption.KMS == "kms"``."""

    #: A customer managed KMS key, rotated yearly (S3 Bucket Keys on).
    KMS = "kms"
    #: S3-managed keys (SSE-S3).
    S3_MANAGED = "s3"


@dataclasses.dataclass(frozen=True)
class Lifecycle:
    """Lifecycle of one zone's objects. ``None`` turns a transition or expiry off."""

    #: Days until objects move to S3 Intelligent-Tiering. :default: None
    intelligent_tiering_days: int | None = None
    #: Days until objects move to Standard-IA (at least 30, S3's minimum). :default: None
    infrequent_access_days: int | None = None
    #: Days until objects move to Glacier Flexible Retrieval. :default: None
    glacier_days: int | None = None
    #: Days until objects move to Glacier Deep Archive. :default: None
    deep_archive_days: int | None = None
    #: Days until noncurrent (overwritten) versions expire. :default: 365
    noncurrent_expiration_days: int | None = 365
    #: Days until incomplete multipart uploads are aborted. :default: 7
    abort_incomplete_multipart_days: int = 7


#: Upper bound of every lifecycle day count (S3 documents none; a sanity bound against typos).
MAX_LIFECYCLE_DAYS = 36_500


def lifecycle_errors(lc: Lifecycle, path: str) -> list[str]:
    """Transitions must be positive, ordered (tiering/IA before Glacier before Deep Archive) and respect
    S3's minimums (Standard-IA >= 30 days; Glacier -> Deep Archive >= 90 days apart).

    Source: https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html
    """
    errors: list[str] = []
    for name in ("intelligent_tiering_days", "infrequent_access_days", "glacier_days", "deep_archive_days",
                 "noncurrent_expiration_days"):
        value = getattr(lc, name)
        if value is not None and value < 1:
            errors.append(f"{path}.{name}: must be a positive number of days or null, got: {value}")
        elif value is not None and value > MAX_LIFECYCLE_DAYS:
            errors.append(f"{path}.{name}: must be at most {MAX_LIFECYCLE_DAYS} days (100 years) or null, got: {value}")
    if not 1 <= lc.abort_incomplete_multipart_days <= MAX_LIFECYCLE_DAYS:
        errors.append(f"{path}.abort_incomplete_multipart_days: must be >= 1 and <= {MAX_LIFECYCLE_DAYS}, "
                      f"got: {lc.abort_incomplete_multipart_days}")
    if lc.infrequent_access_days is not None and lc.infrequent_access_days < 30:
        errors.append(
            f"{path}.infrequent_access_days: S3 requires at least 30 days before Standard-IA, got: {lc.infrequent_access_days}"
        )
    if lc.intelligent_tiering_days is not None and lc.infrequent_access_days is not None:
        errors.append(f"{path}: choose intelligent_tiering_days or infrequent_access_days, not both")
    ordered = [
        ("intelligent_tiering_days", lc.intelligent_tiering_days),
        ("infrequent_access_days", lc.infrequent_access_days),
        ("glacier_days", lc.glacier_days),
        ("deep_archive_days", lc.deep_archive_days),
    ]
    present = [(n, v) for n, v in ordered if v is not None and v >= 1]
    for (n1, v1), (n2, v2) in zip(present, present[1:]):
        if v2 <= v1:
            errors.append(f"{path}.{n2}: must be later than {n1} ({v1}), got: {v2}")
    if lc.glacier_days is not None and lc.deep_archive_days is not None and lc.deep_archive_days - lc.glacier_days < 90:
        errors.append(
            f"{path}.deep_archive_days: must be at least 90 days after glacier_days ({lc.glacier_days}), "
            f"got: {lc.deep_archive_days}"
        )
    return errors


#: The built-in lifecycle of each zone (a zone the configuration leaves out gets its entry here).
DEFAULT_LIFECYCLES: dict[str, Lifecycle] = {
    "landing": Lifecycle(infrequent_access_days=30, glacier_days=None, noncurrent_expiration_days=30),
    "raw": Lifecycle(intelligent_tiering_days=1, glacier_days=180),
    "curated": Lifecycle(intelligent_tiering_days=1),
    "features": Lifecycle(intelligent_tiering_days=1),
    "models": Lifecycle(intelligent_tiering_days=30, noncurrent_expiration_days=None),
    "artifacts": Lifecycle(intelligent_tiering_days=30, noncurrent_expiration_days=90),
}


def default_lifecycle(zone: str) -> Lifecycle:
    """The built-in lifecycle of ``zone``."""
    return DEFAULT_LIFECYCLES[str(zone)]


#: An S3 key prefix: one or more path segments of S3's safe characters, each ending with ``/``.
#: Source: https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html (safe characters).
S3_PREFIX_PATTERN = r"(?:[A-Za-z0-9!_.*'()=-]+/)+"
_PREFIX_RE = re.compile(S3_PREFIX_PATTERN)


#: A prefix that becomes someone's access scope (an SFTP user's home, a session policy's resource): the S3 prefix
#: rule, and each segment starts with a letter or digit: no ``.``/``..`` segment, no ``*`` (a policy wildcard), no
#: leading ``_`` (reserved prefixes such as the glue's ``_quarantine/``). Issue 19 item 6.
USER_PREFIX_PATTERN = r"(?:[A-Za-z0-9][A-Za-z0-9!_.'()=-]*/)+"
_USER_PREFIX_RE = re.compile(USER_PREFIX_PATTERN)


def user_prefix_error(prefix: str, prop: str = "prefix") -> str | None:
    """The message for an access-scope prefix that breaks :data:`USER_PREFIX_PATTERN`, or None when it is valid."""
    if isinstance(prefix, str) and _USER_PREFIX_RE.fullmatch(prefix):
        return None
    return (
        f"{prop} must be one or more path segments of letters, digits and !_.'()=-, each starting with a letter or "
        f"digit and ending with '/' (no '.', '..', '*' or reserved '_' segments), got: {prefix!r}"
    )


def prefix_error(prefix: str, prop: str = "prefix") -> str | None:
    """The message for a key prefix that breaks :data:`S3_PREFIX_PATTERN`, or None when it is valid."""
    if isinstance(prefix, str) and _PREFIX_RE.fullmatch(prefix):
        return None
    return (
        f"{prop} must be one or more path segments of letters, digits and !_.*'()=- each ending with '/' "
        f"(e.g. 'team-a/images/'), got: {prefix!r}"
    )


#: A dataset name as the landing glue reads it from ``<dataset>/<version>/<file>``: 1-128 letters, digits or
#: ``._-``, not starting with ``_`` (``_manifest.json``, ``_quarantine/`` are the glue's own).
DATASET_NAME_PATTERN = r"(?!_)[A-Za-z0-9._-]{1,128}"
#: A dataset the retrain pipeline trains on: 1-63 lowercase letters, digits, ``_`` or ``-``, starting with a letter
#: or digit. Narrower than :data:`DATASET_NAME_PATTERN` because the name becomes part of SageMaker job and model
#: package group names (``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``) and of EventBridge patterns; every retrainable name is
#: also a valid ingestion name.
RETRAINABLE_DATASET_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
_DATASET_NAME_RE = re.compile(DATASET_NAME_PATTERN)
_RETRAINABLE_RE = re.compile(RETRAINABLE_DATASET_PATTERN)


def dataset_name_error(name: object) -> str | None:
    """Why ``name`` cannot be an ingestion dataset, or None."""
    if isinstance(name, str) and _DATASET_NAME_RE.fullmatch(name):
        return None
    return f"names must be 1-128 letters, digits or ._- (not starting with _), got: {name!r}"


def retrainable_dataset_error(name: object) -> str | None:
    """Why the retrain pipeline cannot train on dataset ``name``, or None."""
    if isinstance(name, str) and _RETRAINABLE_RE.fullmatch(name):
        return None
    return f"names must be 1-63 lowercase letters, digits, '_' or '-', got: {name!r}"


def parse_lake_target(target: str) -> tuple[str, str]:
    """``zone`` or ``zone:prefix/`` -> (zone, prefix)."""
    zone, _, prefix = target.partition(":")
    return zone, prefix


def lake_target_errors(path: str, target: str) -> list[str]:
    """Problems of a ``zone`` or ``zone:prefix/`` lake target."""
    zone, prefix = parse_lake_target(target)
    errors = []
    if zone not in ZONES:
        errors.append(f"{path}: zone must be one of {list(ZONES)}, got: {target!r}")
    if prefix and not _PREFIX_RE.fullmatch(prefix):
        errors.append(f"{path}: prefix must be path segments each ending with '/', got: {target!r}")
    return errors
