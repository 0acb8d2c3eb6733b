"""DataSyncPromotion: lands every successful execution of a DataSync task as a new dataset version.

Used by :class:`mlinfra.constructs.datasync.DataSyncTask` when it is given ``dataset=``. The task writes into a fixed
staging prefix of the landing zone (a DataSync S3 location has one subdirectory and StartTaskExecution cannot
override it); on the execution's ``SUCCESS`` event (EventBridge, source ``aws.datasync``, detail-type ``DataSync Task
Execution State Change``) the ``datasync_promote`` handler reads the task report, copies that run's files to
``<dataset>/<version>/`` and writes the manifest last, which hands the version to the landing glue (validation, raw,
catalog, ready marker and event, hence the retrain trigger). A run with failed files is rejected and notified.

Path: rule (SUCCESS of this task only) -> encrypted SQS queue (dead-letter queue; the rule's undeliverable events go
there too) -> the handler, one record at a time with partial batch failures, so a report still being written is
retried by redelivery. DataSync sends its events best effort, so a schedule also runs the handler's reconciler
(``{"mlinfra": "reconcile"}``), which lands every SUCCESS execution of the task not landed or rejected yet.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from mlinfra.constructs.common import acknowledge, events_only_from_this_account
from mlinfra.constructs.data_lake import IDataLake
from mlinfra.constructs.lambda_function import MAX_TIMEOUT_SECONDS, HandlerFunction
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending

__all__ = ["DataSyncPromotion", "EXECUTION_EVENT", "DATASYNC_PREFIX"]

#: The event DataSync sends for each execution state change (EventBridge reference "AWS DataSync events").
EXECUTION_EVENT = {"source": "aws.datasync", "detail-type": "DataSync Task Execution State Change"}
#: The landing prefix the glue ignores: staging areas and rejection records (the handler's ``DATASYNC_PREFIX``).
DATASYNC_PREFIX = "_datasync/"
#: The handler waits at most this long per delivery for a PENDING report, then SQS redelivers the record.
REPORT_WAIT_SECONDS = 60
#: SQS receives before a record goes to the dead-letter queue (with the 6x visibility timeout: hours of retries).
MAX_RECEIVE_COUNT = 5
#: How often the reconciler looks for SUCCESS executions whose event was lost.
RECONCILE_EVERY = cdk.Duration.hours(6)


class DataSyncPromotion(Construct):
    """The completion path of one DataSync task (see the module docstring).

    :param task: the ``AWS::DataSync::Task``. :param dataset: the dataset each run becomes a version of.
    :param lake: the lake (its landing zone). :param staging_prefix: where the task writes (``_datasync/.../staging/``).
    :param rejected_prefix: where rejected runs are recorded. :param report_bucket / report_prefix: the task report.
    :param key: KMS key of the queues and the function's logs (EventBridge may use it). :param alarm_topic: notified
        of rejected runs, handler errors and dead-lettered events. :default: None
    """

    def __init__(self, scope: Construct, id: str, *, task: cdk.CfnResource, dataset: str, lake: IDataLake,
                 staging_prefix: str, rejected_prefix: str, report_bucket: s3.IBucket, report_prefix: str,
                 key: kms.IKey, alarm_topic: sns.ITopic | None = None) -> None:
        super().__init__(scope, id)
        # Records of settled runs, beside the rejected ones: the reconciler skips executions that have one.
        base = rejected_prefix[: -len("rejected/")] if rejected_prefix.endswith("rejected/") else rejected_prefix
        landed_prefix, empty_prefix = f"{base}landed/", f"{base}empty/"
        landing = lake.bucket("landing")
        timeout = cdk.Duration.seconds(MAX_TIMEOUT_SECONDS)  # a large run copies many files; a timeout resumes
        self.dead_letter_queue = sqs.Queue(self, "DeadLetterQueue", encryption=sqs.QueueEncryption.KMS,
                                           encryption_master_key=key, enforce_ssl=True, retention_period=cdk.Duration.days(14))
        for rule in ("AwsSolutions-SQS3", "cfn-guard::sqs_dlq_check"):
            acknowledge(self.dead_letter_queue, rule, "This queue is the dead-letter queue of the DataSync completion queue.")
        self.queue = sqs.Queue(
            self, "Queue", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True,
            visibility_timeout=cdk.Duration.seconds(MAX_TIMEOUT_SECONDS * 6), retention_period=cdk.Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letter_queue),
        )
        for queue in (self.queue, self.dead_letter_queue):
            queue.add_to_resource_policy(events_only_from_this_account(queue.queue_arn, ["sqs:SendMessage"]))
        # EventBridge's KMS requests to an encrypted SQS target carry no source conditions (EventBridge user guide);
        # the queue policies above pin its deliveries to this account's rules.
        key.grant_encrypt_decrypt(iam.ServicePrincipal("events.amazonaws.com"))
        self.rule = events.Rule(
            self, "SuccessRule",
            description="DataSync execution SUCCESS -> land the run as a new dataset version",
            event_pattern=events.EventPattern(
                source=[EXECUTION_EVENT["source"]], detail_type=[EXECUTION_EVENT["detail-type"]],
                resources=events.Match.prefix(f"{task.ref}/execution/"), detail={"State": ["SUCCESS"]},
            ),
            targets=[targets.SqsQueue(self.queue, dead_letter_queue=self.dead_letter_queue, retry_attempts=8)],
        )
        self.handler = HandlerFunction(
            self, "Handler", handler="datasync_promote", timeout=timeout, memory_size=1024, encryption_key=key,
            description=f"Land each successful DataSync run of dataset {dataset} as a new version",
            environment={
                "DATASET": dataset, "LANDING_BUCKET": landing.bucket_name, "STAGING_PREFIX": staging_prefix,
                "REJECTED_PREFIX": rejected_prefix, "LANDED_PREFIX": landed_prefix, "EMPTY_PREFIX": empty_prefix,
                "REPORT_BUCKET": report_bucket.bucket_name,
                "REPORT_PREFIX": report_prefix, "TASK_ARN": task.ref, "REPORT_WAIT_SECONDS": str(REPORT_WAIT_SECONDS),
                **({"ALARM_TOPIC_ARN": alarm_topic.topic_arn} if alarm_topic is not None else {}),
            },
        )
        fn = self.handler.function
        fn.add_event_source(sources.SqsEventSource(self.queue, batch_size=1, report_batch_item_failures=True, max_concurrency=2))
        # Least privilege: read the run's staged files; read/write only the dataset's versions and the rejection
        # records (heads answer 404, not 403, for a missing key only with ListBucket, which grant_read includes);
        # read the task's reports; describe only this task's executions. Never delete.
        lake.grant_read("landing", fn, staging_prefix)
        lake.grant_read_write("landing", fn, f"{dataset}/")
        lake.grant_read_write("landing", fn, rejected_prefix)
        for records in (landed_prefix, empty_prefix):  # the reconciler's records of landed and empty runs
            lake.grant_read_write("landing", fn, records)
        report_bucket.grant_read(fn, f"{report_prefix}*")
        fn.add_to_role_policy(iam.PolicyStatement(
            sid="DescribeThisTasksExecutions", actions=["datasync:DescribeTaskExecution"],
            resources=[f"{task.ref}/execution/*"],
        ))
        # ListTaskExecutions is a List action without resource-level permissions (Service Authorization Reference,
        # AWS DataSync): it needs Resource '*' and returns execution ARNs and statuses only.
        fn.add_to_role_policy(iam.PolicyStatement(sid="ListExecutionsForTheReconciler", actions=["datasync:ListTaskExecutions"],
                                                  resources=["*"]))
        self.reconcile_rule = events.Rule(
            self, "ReconcileSchedule", schedule=events.Schedule.rate(RECONCILE_EVERY),
            description=f"Land DataSync runs of dataset {dataset} whose SUCCESS event was lost (reconciler)",
            targets=[targets.LambdaFunction(fn, event=events.RuleTargetInput.from_object({"mlinfra": "reconcile"}),
                                            dead_letter_queue=self.handler.dead_letter_queue, retry_attempts=2)],
        )
        if alarm_topic is not None:
            alarm_topic.grant_publish(fn)
            action = cw_actions.SnsAction(alarm_topic)
            self.handler.add_error_alarm(action)
            dlq_alarm = self.dead_letter_queue.metric_approximate_number_of_messages_visible(period=cdk.Duration.minutes(5)).create_alarm(
                self, "DeadLetterAlarm", threshold=1, evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"DataSync runs of dataset {dataset} that could not be landed (dead-lettered)")
            dlq_alarm.add_alarm_action(action)
        acknowledge(fn.role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray PutTraceSegments/PutTelemetryRecords and datasync:ListTaskExecutions (the reconciler) accept "
                    "no resource scoping, so they need Resource '*'; ListTaskExecutions returns execution ARNs and statuses.")
        acknowledge_wildcards(
            fn.role,
            "S3 grants are scoped to this task's staging prefix, the dataset's version prefix, its landed, rejected "
            "and empty run records and its report prefix; DescribeTaskExecution to this task's executions (execution ids are generated); "
            "KMS data-key and S3 Get*/List*/Abort* wildcards are aws-cdk-lib's grant forms on those ARNs.",
            actions=(*KMS_WILDCARD_ACTIONS, *S3_GRANT_WILDCARD_ACTIONS),
            resources=(ending(f"/{staging_prefix}*"), ending(f"/{dataset}/*"), ending(f"/{rejected_prefix}*"),
                       ending(f"/{landed_prefix}*"), ending(f"/{empty_prefix}*"),
                       ending(f"/{report_prefix}*"), ending("/execution/*")),
        )
