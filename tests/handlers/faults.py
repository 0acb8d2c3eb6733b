"""Fault injection for botocore clients, shared by the handler tests.

:class:`Faults` hooks a client's botocore events (``before-parameter-build``, ``before-call``, ``after-call``,
``after-call-error``), so it works on any boto3 client a handler uses, and can:

- fail a call BEFORE it reaches the service (``"before"``: a 500, nothing happened),
- fail it AFTER the service executed it (``"after"``: the write happened, the response was lost; the caller
  sees a 500 and retries: the hardest case for idempotency),
- answer ``PutEvents`` with a failed entry and no exception (``"partial"``: what EventBridge does on an
  internal failure; the event is not delivered),
- run the calls of several threads one at a time in an order the test draws (:class:`Scheduler`), so
  concurrent deliveries interleave at every AWS call boundary, reproducibly (hypothesis shrinks them),
- emulate S3 conditional copies (``CopyObject`` with ``IfNoneMatch="*"``, or the ``If-None-Match: *`` header the
  handlers send where botocore lacks the member, answers 412 when the key exists):
  moto 5.2.5 honours ``IfNoneMatch`` on PutObject and CompleteMultipartUpload but ignores it on CopyObject,
  which AWS documents ("Copies the object only if the object key name at the destination does not already
  exist ... Otherwise, Amazon S3 returns a 412 Precondition Failed error", CopyObject API reference).

Each AWS call is atomic (as a single call is in AWS); interleavings happen only between calls.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from botocore.exceptions import ClientError

FaultPlan = Callable[[int, str, str], "str | None"]  # (call index, service, operation) -> kind or None

KINDS = ("before", "after", "partial")


class _Http:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""


def server_error(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "InternalError", "Message": "injected fault"},
                        "ResponseMetadata": {"HTTPStatusCode": 500}}, operation)


class Scheduler:
    """Runs jobs in threads, one AWS call at a time; ``choose(n)`` picks which of the n waiting threads calls next
    (threads are ordered by job index, so a choice sequence is one reproducible interleaving)."""

    def __init__(self, choose: Callable[[int], int], timeout_s: float = 60.0) -> None:
        self._choose = choose
        self._cv = threading.Condition()
        self._ids: dict[int, int] = {}
        self._running: set[int] = set()
        self._waiting: set[int] = set()
        self._granted: int | None = None
        self._timeout = timeout_s

    def _me(self) -> int | None:
        return self._ids.get(threading.get_ident())

    def acquire(self) -> None:
        me = self._me()
        if me is None:
            return
        with self._cv:
            self._running.discard(me)
            self._waiting.add(me)
            self._cv.notify_all()
            if not self._cv.wait_for(lambda: self._granted == me, timeout=self._timeout):
                raise TimeoutError("scheduler: no turn granted")
            self._waiting.discard(me)
            self._running.add(me)

    def release(self) -> None:
        me = self._me()
        if me is None:
            return
        with self._cv:
            if self._granted == me:
                self._granted = None
                self._cv.notify_all()

    def run(self, jobs: list[Callable[[], Any]]) -> list[BaseException | None]:
        """Run every job to completion; returns each job's exception (None when it returned)."""
        errors: list[BaseException | None] = [None] * len(jobs)
        started = threading.Barrier(len(jobs) + 1)

        def worker(index: int, job: Callable[[], Any]) -> None:
            with self._cv:
                self._ids[threading.get_ident()] = index
            started.wait()
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                errors[index] = exc
            finally:
                with self._cv:
                    self._running.discard(index)
                    if self._granted == index:
                        self._granted = None
                    self._cv.notify_all()

        with self._cv:
            self._running = set(range(len(jobs)))
        threads = [threading.Thread(target=worker, args=(i, j), daemon=True) for i, j in enumerate(jobs)]
        for t in threads:
            t.start()
        started.wait()
        while True:
            with self._cv:
                if not self._cv.wait_for(lambda: not self._running and self._granted is None, timeout=self._timeout):
                    raise TimeoutError(f"scheduler: threads {sorted(self._running)} never reached a call")
                if not self._waiting:
                    break
                waiting = sorted(self._waiting)
                self._granted = waiting[self._choose(len(waiting)) % len(waiting)]
                self._cv.notify_all()
        for t in threads:
            t.join(self._timeout)
        self._ids.clear()
        return errors


class Faults:
    """Injects the faults of ``plan`` into every attached client and records each call as (service, operation)."""

    def __init__(self, plan: FaultPlan | None = None, scheduler: Scheduler | None = None,
                 s3_probe: Any | None = None) -> None:
        self.plan = plan or (lambda i, s, o: None)
        self.scheduler = scheduler
        self.calls: list[tuple[str, str]] = []
        self.injected: list[tuple[int, str, str, str]] = []
        self._s3_probe = s3_probe  # an unhooked S3 client for the conditional-copy emulation
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        events = client.meta.events
        events.register("before-parameter-build.*.*", self._params)
        events.register("before-call.*.*", self._before)
        events.register("after-call.*.*", self._after)
        events.register("after-call-error.*.*", self._after_error)
        events.register_last("before-call.s3.CopyObject", self._copy_condition)
        return client

    # botocore handlers -----------------------------------------------------------------------------------------

    def _params(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["mlinfra_params"] = dict(params)

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        service, op = model.service_model.service_name, model.name
        if self.scheduler is not None:
            self.scheduler.acquire()
        try:
            with self._lock:
                index = len(self.calls)
                self.calls.append((service, op))
            kind = self.plan(index, service, op)
            if kind == "partial" and op != "PutEvents":
                kind = "after"
            context["mlinfra_fault"] = kind
            if kind:
                self.injected.append((index, service, op, kind))
            if kind == "before":
                raise server_error(op)
            if kind == "partial":
                return _Http(200), {"FailedEntryCount": 1, "Entries": [
                    {"ErrorCode": "InternalFailure", "ErrorMessage": "injected partial failure"}]}
            return None
        except BaseException:
            if self.scheduler is not None:
                self.scheduler.release()
            raise

    def _copy_condition(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        """The conditional-copy emulation, on the request's ``If-None-Match: *`` header: botocore serializes the
        ``IfNoneMatch`` parameter to it, and the handlers add it themselves (a ``before-call`` handler, run before
        this one) where botocore's model lacks the member."""
        if self._s3_probe is None or params.get("headers", {}).get("If-None-Match") != "*":
            return None
        api = context.get("mlinfra_params", {})
        try:
            exists = self._exists(api["Bucket"], api["Key"])
        except BaseException:
            if self.scheduler is not None:
                self.scheduler.release()
            raise
        if not exists:
            return None
        return _Http(412), {"Error": {"Code": "PreconditionFailed", "Message": "At least one of the pre-conditions "
                                      "you specified did not hold"}, "ResponseMetadata": {"HTTPStatusCode": 412}}

    def _after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.release()
        if context.get("mlinfra_fault") == "after":
            raise server_error(model.name)

    def _after_error(self, **_: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.release()

    def _exists(self, bucket: str, key: str) -> bool:
        try:
            self._s3_probe.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


def at_indices(faults: dict[int, str]) -> FaultPlan:
    """A plan failing the calls at the given global call indices with the given kinds."""
    return lambda index, service, op: faults.get(index)


def on_operation(operation: str, kind: str, times: int = 1) -> FaultPlan:
    """A plan failing the first ``times`` calls of one operation (e.g. ``"PutEvents"``)."""
    left = [times]

    def plan(index: int, service: str, op: str) -> str | None:
        if op == operation and left[0] > 0:
            left[0] -= 1
            return kind
        return None

    return plan
