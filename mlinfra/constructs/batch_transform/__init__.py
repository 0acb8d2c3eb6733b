"""BatchTransform: batch inference of each ready input batch with the newest APPROVED model, results to the lake.

Input layout (in ``input_bucket``)::

    <input_prefix><batch>/...              the batch's data files (any number of objects)
    <input_prefix>_ready/<batch>           the batch's completion marker, written LAST by the producer

One transform job per batch, never per object: the EventBridge rule matches only marker keys (the lake's
``_ready/`` convention, as the landing glue's ``dataset=<d>/_ready/...`` markers), so 1,000 data files and one
marker start one run. ``<batch>`` is one path segment of letters, digits, ``.``, ``_``, ``-`` or ``=``; a marker
elsewhere under ``_ready/`` fails the run with a notification (``BadMarker``) instead of scoring the wrong prefix.
A schedule (or a manual ``StartExecution`` with ``{"batch": "<batch>"}``) scores ``<input_prefix><scheduled_batch>/``.

The run (Step Functions, request-response ``aws-sdk`` tasks polled in Wait/Describe/Choice loops, no ``.sync``,
so AWS and the local emulator behave alike)::

    parse marker or defaults -> plan (deterministic job name) -> job already started? -> own: poll; else Succeeded
      -> ListModelPackages(group, Approved, newest first, paged) -> none: NotifyFailure -> Fail (NoApprovedModel)
      -> CreateModel(ModelPackageName = that version) -> [CreateProcessingJob -> poll]
      -> CreateTransformJob(S3Prefix of the batch) -> poll -> DeleteModel -> Succeeded
      (any error or failed job -> NotifyFailure (SNS) -> Fail)

Model: resolved at RUN time as the newest ``Approved`` version of the model package group (the registry is the
source of truth for "approved"; see docs/serving.md, "Batch transform"). No approved version: the run fails as
``NoApprovedModel`` and notifies; it never falls back to an older or unapproved model.

Idempotency: the job name is ``<job_prefix>-<SHA-1 of batch and run key>``; the run key of a marker run is the
marker's key and S3 version id (else the event's sequencer; never the ETag), of a scheduled run the EventBridge
event id, of a manual run the execution name. A duplicated or retried marker event therefore names the same job.
Jobs carry the tag ``mlinfra:execution`` (SHA-1 of the creating execution): a run that finds a job of its name
keeps polling it when the tag is its own (a retried create, or an error after SageMaker made the job) and ends
``AlreadyStarted`` when another execution made it (a duplicate delivery). Writing the marker again (a new version)
scores the batch again. The per-run model is named like the job and deleted after a completed job.

Timeout: ``timeout / poll_interval`` polls, then ``StopTransformJob`` and a notification (``TransformTimedOut``).

Results land under ``s3://<output bucket>/<output prefix><batch>/model-version=<v>/<job>/``; the job is tagged with
the model package ARN. Limits (SageMaker): ``MaxPayloadInMB`` 0-100 and ``MaxConcurrentTransforms x MaxPayloadInMB
<= 100``.
"""

from mlinfra.constructs.batch_transform.construct import BatchTransform
from mlinfra.constructs.batch_transform.props import MAX_PAYLOAD_MB, READY_MARKER_DIR, BatchStrategy, ProcessingStep, SplitType

__all__ = ["BatchTransform", "SplitType", "BatchStrategy", "ProcessingStep", "MAX_PAYLOAD_MB", "READY_MARKER_DIR"]
