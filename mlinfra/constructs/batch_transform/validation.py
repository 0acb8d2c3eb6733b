"""BatchTransform's prop validation: one message per rule, naming the prop, the value and what is allowed."""

from __future__ import annotations

from mlinfra.constructs.batch_transform.props import (
    BATCH_RE,
    GROUP_RE,
    JOB_PREFIX_RE,
    MAX_PAYLOAD_MB,
    READY_MARKER_DIR,
    BatchStrategy,
    SplitType,
)
import aws_cdk as cdk

from mlinfra.constructs.common import check_between, is_token
from mlinfra.constructs.retrain_pipeline import HISTORY_EVENT_LIMIT
from mlinfra.constructs.data_lake import validate_prefix
from mlinfra.domain.hosting_instances import family_of
from mlinfra.domain.rules import cite


#: History events of one poll iteration (FACTS.md: about 13): the counter Pass and the budget Choice (2 each), the
#: Wait (2), the describe Task (entered, scheduled, started, succeeded, exited: 5) and the done Choice (2).
#: tests/unit/test_batch_transform.py counts them from the synthesized definition.
EVENTS_PER_POLL = 13
#: The events of everything but the polls (marker, plan, registry pages, model, creates, owner checks, cleanup,
#: failure path).
EVENTS_OUTSIDE_POLLS = 200
#: A create refused for a quota (ResourceLimitExceeded) is retried 5, 10, 20, 30 and 30 minutes later: at most
#: 95 minutes, then the run fails and notifies.
QUOTA_RETRY = dict(interval=cdk.Duration.minutes(5), max_attempts=5, backoff_rate=2.0, max_delay=cdk.Duration.minutes(30))
QUOTA_RETRY_SECONDS = 95 * 60


def max_polls(timeout, poll_interval) -> int:
    """The transform polls ``timeout`` allows (then the run stops the job); with tokens, what the history allows."""
    if is_token(timeout.to_seconds()) or is_token(poll_interval.to_seconds()):
        return (HISTORY_EVENT_LIMIT - EVENTS_OUTSIDE_POLLS) // EVENTS_PER_POLL
    return max(-(-int(timeout.to_seconds()) // max(int(poll_interval.to_seconds()), 1)), 1)


def validate_history(timeout, poll_interval, processing_runtime=None) -> None:
    """The polls a run can make (the transform's budget, and preprocessing's until its max runtime) must fit a
    Standard execution's history (rule stepfunctions.history-event-limit: the limit ends an execution without
    running its Catch)."""
    if is_token(timeout.to_seconds()) or is_token(poll_interval.to_seconds()):
        return
    polls = max_polls(timeout, poll_interval)
    if processing_runtime is not None and not is_token(processing_runtime.to_seconds()):
        polls += max_polls(processing_runtime, poll_interval)
    extra = "" if processing_runtime is None or is_token(processing_runtime.to_seconds()) else \
        f" (+ processing.max_runtime {int(processing_runtime.to_seconds())} s)"
    worst = polls * EVENTS_PER_POLL + EVENTS_OUTSIDE_POLLS
    if worst > HISTORY_EVENT_LIMIT:
        raise ValueError(
            f"timeout / poll_interval must keep a run under {HISTORY_EVENT_LIMIT} history events (raise poll_interval "
            f"or lower timeout and processing.max_runtime), got: {int(timeout.to_seconds())} s{extra} / "
            f"{int(poll_interval.to_seconds())} s = {polls} polls, "
            f"about {worst} events {cite('stepfunctions.history-event-limit')}")


def validate_props(group, input_prefix, output_prefix, instance_type, instance_count, split_type, batch_strategy,
              max_payload_mb, max_concurrent_transforms, processing, schedule, trigger_on_ready_marker, poll_interval,
              scheduled_batch, job_prefix, vpc_config) -> None:
    if not is_token(group) and not (isinstance(group, str) and GROUP_RE.fullmatch(group)):
        raise ValueError("model_package_group_name must be 1-63 letters, digits or hyphens (a model package group's "
                         f"name), got: {group!r}")
    validate_prefix(input_prefix, "input_prefix")
    validate_prefix(output_prefix, "output_prefix")
    if trigger_on_ready_marker and is_token(input_prefix):
        raise ValueError("input_prefix must be a literal with trigger_on_ready_marker (the batch is found by its "
                         "position in the marker key), got: a token")
    family_of(instance_type, "instance_type")
    if not is_token(instance_count) and instance_count < 1:
        raise ValueError(f"instance_count must be >= 1, got: {instance_count}")
    if not isinstance(split_type, SplitType):
        raise ValueError(f"split_type must be a SplitType ({[s.name for s in SplitType]}), got: {split_type!r}")
    if not isinstance(batch_strategy, BatchStrategy):
        raise ValueError(f"batch_strategy must be a BatchStrategy ({[s.name for s in BatchStrategy]}), got: {batch_strategy!r}")
    if not is_token(max_payload_mb) and not 0 <= max_payload_mb <= MAX_PAYLOAD_MB:
        raise ValueError(f"max_payload_mb must be between 0 and {MAX_PAYLOAD_MB} MB, got: {max_payload_mb} "
                         f"{cite('sagemaker.batch-transform-payload')}")
    if not is_token(max_concurrent_transforms) and max_concurrent_transforms < 1:
        raise ValueError(f"max_concurrent_transforms must be >= 1, got: {max_concurrent_transforms}")
    if not is_token(max_payload_mb) and not is_token(max_concurrent_transforms) and \
            max_concurrent_transforms * max_payload_mb > MAX_PAYLOAD_MB:
        raise ValueError(
            f"max_concurrent_transforms x max_payload_mb must be <= {MAX_PAYLOAD_MB} MB, got: "
            f"{max_concurrent_transforms} x {max_payload_mb} = {max_concurrent_transforms * max_payload_mb} "
            f"{cite('sagemaker.batch-transform-payload')}"
        )
    if schedule is None and not trigger_on_ready_marker:
        raise ValueError("schedule/trigger_on_ready_marker: give a schedule, trigger_on_ready_marker=True or both, got: neither")
    check_between("poll_interval", poll_interval, 1, 3600, "seconds")
    if not isinstance(scheduled_batch, str) or not BATCH_RE.fullmatch(scheduled_batch) or \
            scheduled_batch == READY_MARKER_DIR.rstrip("/"):
        raise ValueError("scheduled_batch must be 1-128 letters, digits, '.', '_', '-' or '=' (one path segment, not "
                         f"'_ready'), got: {scheduled_batch!r}")
    if not JOB_PREFIX_RE.fullmatch(job_prefix):
        raise ValueError(f"job_prefix must be 1-20 lowercase letters, digits or '-', starting with a letter or digit, "
                         f"got: {job_prefix!r}")
    if vpc_config is not None and set(vpc_config) != {"SecurityGroupIds", "Subnets"}:
        raise ValueError(f"vpc_config must have exactly the keys SecurityGroupIds and Subnets, got: {sorted(vpc_config)}")
    if processing is not None:
        family_of(processing.instance_type, "processing.instance_type")
        validate_prefix(processing.output_prefix, "processing.output_prefix")
        if not is_token(processing.instance_count) and processing.instance_count < 1:
            raise ValueError(f"processing.instance_count must be >= 1, got: {processing.instance_count}")
        if not processing.entrypoint:
            raise ValueError("processing.entrypoint: required, got: []")
