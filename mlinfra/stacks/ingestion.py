"""IngestionStack: everything that brings data into the lake's landing zone and promotes it to raw.

- the dataset catalog (DynamoDB, PITR, customer managed KMS key, RETAINED),
- the landing glue (``mlinfra/lambdas/landing_glue``): landing ``Object Created`` events -> EventBridge rule ->
  encrypted SQS queue (with a DLQ) -> Lambda in batches with partial batch failures, alarms on errors, on
  the DLQ and on the age of the oldest message, and an hourly schedule that runs the glue's reconciler
  (versions whose files are all catalogued but whose ready event was lost),
- the SFTP server (Transfer Family) and its users, DataSync tasks and the DataSync endpoint, from the config,
- optionally a Firehose delivery stream into raw.

Outputs: the catalog table, the "Dataset Version Ready" event's bus, source and detail type, the glue queue,
the alarm topic and the SFTP server id.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from mlinfra.config import DataSyncTaskConfig, PlatformConfig
from mlinfra.constructs import datasync as ds
from mlinfra.constructs.common import acknowledge, alarm_principal, encrypted_table, events_only_from_this_account, limit_grants_to_aws_services
from mlinfra.constructs.data_lake import IDataLake
from mlinfra.constructs.firehose import RawDeliveryStream
from mlinfra.constructs.lambda_function import HandlerFunction
from mlinfra.constructs.network import Network
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.constructs.transfer import IdentityProvider, SftpServer, SftpUser
from mlinfra.stacks.base import PlatformStack

#: The event the glue emits when a manifest's files are all promoted (the retrain pipeline subscribes).
READY_EVENT_SOURCE = "mlinfra.ingestion"
READY_EVENT_DETAIL_TYPE = "Dataset Version Ready"
READY_EVENT_BUS = "default"
#: At most this many concurrent landing-glue invocations (the SQS event source's maximum concurrency, 2-1000): a burst
#: of uploads cannot take the account's Lambda concurrency, without reserving any of it.
GLUE_MAX_CONCURRENCY = 10


class IngestionStack(PlatformStack):
    """Landing glue, dataset catalog, SFTP, DataSync (and optionally Firehose) over an existing lake and VPC."""

    def __init__(self, scope: Construct, *, config: PlatformConfig, lake: IDataLake, network: Network) -> None:
        super().__init__(scope, "ingestion", config=config, description="Ingestion: landing glue, catalog, SFTP, DataSync")
        cfg = config.ingestion
        self.lake = lake
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="Ingestion: catalog, queues, topic, logs",
                           removal_policy=cdk.RemovalPolicy.RETAIN)
        limit_grants_to_aws_services(self.key)

        # --- alarms -------------------------------------------------------------------------------
        self.alarm_topic = sns.Topic(self, "AlarmTopic", master_key=self.key, enforce_ssl=True,
                                     display_name=f"{config.prefix} {config.env_name} ingestion alarms")
        # EventBridge's KMS requests carry no aws:SourceArn/SourceAccount (EventBridge user guide, encrypted SQS and
        # SNS targets): the queue and topic policies below are where its deliveries are pinned to this account.
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal("events.amazonaws.com"))
        self.key.grant_encrypt_decrypt(alarm_principal())
        self.alarm_topic.add_to_resource_policy(events_only_from_this_account(self.alarm_topic.topic_arn, ["sns:Publish"]))
        if cfg.alarm_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(cfg.alarm_email))
        alarm_action = cw_actions.SnsAction(self.alarm_topic)

        # --- dataset catalog ----------------------------------------------------------------------
        self.catalog = encrypted_table(self, "DatasetCatalog", partition_key="dataset", key=self.key,
                                       deletion_protection=config.is_production, removal_policy=cdk.RemovalPolicy.RETAIN)

        # --- landing glue -------------------------------------------------------------------------
        timeout = cdk.Duration.seconds(cfg.handler_timeout_seconds)
        self.glue_dlq = sqs.Queue(self, "GlueDeadLetterQueue", encryption=sqs.QueueEncryption.KMS,
                                  encryption_master_key=self.key, enforce_ssl=True, retention_period=cdk.Duration.days(14))
        for rule in ("AwsSolutions-SQS3", "cfn-guard::sqs_dlq_check"):
            acknowledge(self.glue_dlq, rule, "This queue is the dead-letter queue of the landing glue queue.")
        self.glue_queue = sqs.Queue(
            self, "GlueQueue", encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.key, enforce_ssl=True,
            visibility_timeout=cdk.Duration.seconds(cfg.handler_timeout_seconds * 6),
            retention_period=cdk.Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5, queue=self.glue_dlq),
        )
        self.glue_queue.add_to_resource_policy(events_only_from_this_account(self.glue_queue.queue_arn, ["sqs:SendMessage"]))
        landing, raw = lake.bucket("landing"), lake.bucket("raw")
        self.landing_rule = events.Rule(
            self, "LandingObjectCreated",
            description="New landing objects -> landing glue queue",
            event_pattern=events.EventPattern(source=["aws.s3"], detail_type=["Object Created"],
                                              detail={"bucket": {"name": [landing.bucket_name]}}),
            # Events EventBridge cannot deliver (throttling, a policy error) land in the glue's DLQ, which is alarmed.
            targets=[targets.SqsQueue(self.glue_queue, dead_letter_queue=self.glue_dlq, retry_attempts=8)],
        )
        self.glue = HandlerFunction(
            self, "LandingGlue", handler="landing_glue",
            description="Validate, quarantine, promote landing objects to raw and catalogue them",
            timeout=timeout, memory_size=1024, encryption_key=self.key,
            environment={
                "RAW_BUCKET": raw.bucket_name,
                "CATALOG_TABLE": self.catalog.table_name,
                "EVENT_BUS_NAME": READY_EVENT_BUS,
                "DATASETS": json.dumps({n: {"extensions": r.extensions, "content_types": r.content_types}
                                        for n, r in sorted(cfg.datasets.items())}, separators=(",", ":")),
                "ALLOW_UNREGISTERED_DATASETS": str(cfg.allow_unregistered_datasets).lower(),
                "DEFAULT_EXTENSIONS": ",".join(cfg.default_extensions),
                "MAX_HASH_BYTES": str(cfg.max_hash_bytes),
            },
        )
        fn = self.glue.function
        fn.add_event_source(sources.SqsEventSource(self.glue_queue, batch_size=10, report_batch_item_failures=True,
                                                   max_batching_window=cdk.Duration.seconds(5),
                                                   max_concurrency=GLUE_MAX_CONCURRENCY))
        lake.grant_read("landing", fn)
        lake.grant_write("landing", fn, "_quarantine/")
        fn.add_to_role_policy(iam.PolicyStatement(
            sid="TagLandingObjects", actions=["s3:PutObjectTagging", "s3:PutObjectVersionTagging"],
            resources=[landing.arn_for_objects("*")],
        ))
        raw.grant_read(fn, "dataset=*")
        raw.grant_put(fn, "dataset=*")
        # Only what the glue does: never DeleteItem (the catalog is append-only, like the lake).
        # (TransactWriteItems is authorized by the UpdateItem actions it contains; Scan is the reconciler's.)
        self.catalog.grant(fn, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
                           "dynamodb:Scan", "dynamodb:DescribeTable")
        # The reconciler: finishes dataset versions whose files are all catalogued but whose deliveries were lost
        # before the ready event (see the glue's ``reconcile``); hourly, same function, its own input.
        self.glue_reconcile_rule = events.Rule(
            self, "GlueReconcileSchedule", schedule=events.Schedule.rate(cdk.Duration.hours(1)),
            description="Hourly: landing glue reconciler (versions catalogued but not marked ready)",
            targets=[targets.LambdaFunction(fn, event=events.RuleTargetInput.from_object({"mlinfra": "reconcile"}),
                                            dead_letter_queue=self.glue_dlq, retry_attempts=2)],
        )
        self.key.grant_encrypt_decrypt(fn)
        events.EventBus.from_event_bus_name(self, "DefaultBus", READY_EVENT_BUS).grant_put_events_to(fn)
        self.glue.add_error_alarm(alarm_action)
        for alarm_id, metric, threshold, what in (
            ("GlueDlqAlarm", self.glue_dlq.metric_approximate_number_of_messages_visible(period=cdk.Duration.minutes(5)), 1,
             "landing events failed 5 times and wait in the DLQ"),
            ("GlueBacklogAlarm", self.glue_queue.metric_approximate_age_of_oldest_message(period=cdk.Duration.minutes(5)), 3600,
             "the oldest landing event is more than an hour old"),
        ):
            alarm = metric.create_alarm(self, alarm_id, threshold=threshold, evaluation_periods=1,
                                        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                                        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING, alarm_description=what)
            alarm.add_alarm_action(alarm_action)
        acknowledge_wildcards(
            fn.role,
            "S3 grants are scoped to landing (read and tag; write only under _quarantine/) and raw objects under "
            "dataset=*; KMS data-key and S3 Get*/List*/Abort* wildcards are aws-cdk-lib's grant forms on those ARNs.",
            actions=(*KMS_WILDCARD_ACTIONS, *S3_GRANT_WILDCARD_ACTIONS),
            resources=(ending("/*"), ending("/_quarantine/*"), ending("/dataset=*")),
        )

        # --- SFTP (Transfer Family) -------------------------------------------------------------------
        self.sftp: SftpServer | None = None
        if cfg.transfer.enabled:
            t = cfg.transfer
            self.sftp = SftpServer(
                self, "Sftp", lake=lake, vpc=network.vpc, subnets=network.private_subnet_selection,
                allow_public_endpoint=t.public_endpoint, allowed_cidrs=t.allowed_cidrs,
                security_policy=t.security_policy,
                identity_provider=IdentityProvider.LAMBDA if t.identity_provider == "lambda" else IdentityProvider.SERVICE_MANAGED,
                users=[SftpUser(u.name, u.prefix, u.ssh_public_keys, read_only=u.read_only) for u in t.users],
                secret_prefix=f"{config.prefix}/{config.env_name}/transfer/", encryption_key=self.key,
            )

        # --- DataSync ---------------------------------------------------------------------------------
        d = cfg.datasync
        self.datasync_endpoint = (
            ds.DataSyncEndpoint(self, "DataSyncEndpoint", vpc=network.vpc, agent_cidrs=d.agent_cidrs,
                                subnets=network.private_subnet_selection)
            if d.vpc_endpoint else None
        )
        self.datasync_tasks: dict[str, ds.DataSyncTask] = {}
        for task_cfg in d.tasks:
            self.datasync_tasks[task_cfg.name] = ds.DataSyncTask(
                self, f"DataSync-{task_cfg.name}",
                source=self._source(task_cfg), lake=lake, zone=task_cfg.zone, prefix=task_cfg.prefix,
                dataset=task_cfg.dataset,
                schedule=task_cfg.schedule, bytes_per_second=task_cfg.bytes_per_second,
                includes=task_cfg.includes, excludes=task_cfg.excludes,
                verify_mode=ds.VerifyMode(task_cfg.verify_mode), storage_class=ds.S3StorageClass(task_cfg.storage_class),
                log_key=self.key, alarm_topic=self.alarm_topic,
                state_change_targets=[targets.SqsQueue(self.glue_queue, dead_letter_queue=self.glue_dlq, retry_attempts=8)],
            )

        # --- Firehose ---------------------------------------------------------------------------------
        self.stream = RawDeliveryStream(self, "RawStream", lake=lake, name="events") if cfg.firehose else None

        # --- outputs ----------------------------------------------------------------------------------
        cdk.CfnOutput(self, "CatalogTableName", value=self.catalog.table_name, description="Dataset catalog (DynamoDB)")
        cdk.CfnOutput(self, "CatalogTableArn", value=self.catalog.table_arn)
        cdk.CfnOutput(self, "DatasetReadyEventBus", value=READY_EVENT_BUS, description="Bus of 'Dataset Version Ready'")
        cdk.CfnOutput(self, "DatasetReadyEventSource", value=READY_EVENT_SOURCE)
        cdk.CfnOutput(self, "DatasetReadyDetailType", value=READY_EVENT_DETAIL_TYPE)
        cdk.CfnOutput(self, "GlueQueueUrl", value=self.glue_queue.queue_url)
        cdk.CfnOutput(self, "GlueFunctionName", value=fn.function_name)
        cdk.CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)
        cdk.CfnOutput(self, "LandingKeyLayout", value="<dataset>/<version>/<file>; manifest <dataset>/<version>/_manifest.json")
        if self.sftp is not None:
            cdk.CfnOutput(self, "SftpServerId", value=self.sftp.server_id)

    @property
    def ready_event_pattern(self) -> events.EventPattern:
        """The pattern a consumer (the retrain pipeline) subscribes to."""
        return events.EventPattern(source=[READY_EVENT_SOURCE], detail_type=[READY_EVENT_DETAIL_TYPE])

    def _source(self, t: DataSyncTaskConfig) -> ds.Source:
        cid = f"DataSync-{t.name}"
        if t.source == "s3":
            return ds.S3Source(s3.Bucket.from_bucket_name(self, f"{cid}-SourceBucket", t.source_bucket), t.source_prefix)
        if t.source == "nfs":
            return ds.NfsSource(t.server, t.subdirectory, t.agent_arns)
        if t.source == "smb":
            secret = secretsmanager.Secret.from_secret_name_v2(self, f"{cid}-Password", t.password_secret_name)
            return ds.SmbSource(t.server, t.subdirectory, t.user, secret, t.agent_arns)
        host, _, port = (t.server or "").partition(":")
        return ds.HdfsSource([(host, int(port or 8020))], t.user, t.agent_arns, t.subdirectory)
