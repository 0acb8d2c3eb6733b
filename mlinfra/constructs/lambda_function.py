"""HandlerFunction: the one way mlinfra deploys a glue handler from ``mlinfra/lambdas/<name>/``.

Python 3.13 on arm64, AWS Lambda Powertools from AWS's public layer (so the package stays dependency-free
inside Lambda), X-Ray tracing, a KMS-encrypted log group with retention, a least-privilege role that can
write only its own log group (no AWS managed policy), an encrypted SQS dead-letter queue for asynchronous
invocations, and an error alarm. The handler source ships inside the ``mlinfra`` package, so users of
``pip install mlinfra`` deploy the same code the tests run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from mlinfra.constructs.common import acknowledge, encrypted_log_group, is_token, limit_grants_to_aws_services, log_retention, path_in_errors

LAMBDAS_DIR = Path(__file__).resolve().parent.parent / "lambdas"

#: AWS's public Powertools for AWS Lambda (Python) v3 layer, published by account 017000801446 in every
#: commercial region. Version 18 matches aws-lambda-powertools 3.x used by the tests.
POWERTOOLS_LAYER = "arn:{partition}:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64:18"

RUNTIME = lambda_.Runtime.PYTHON_3_13
MAX_TIMEOUT_SECONDS = 900


def handler_dir(name: str) -> Path:
    path = LAMBDAS_DIR / name
    if not (path / "handler.py").is_file():
        available = sorted(p.name for p in LAMBDAS_DIR.iterdir() if (p / "handler.py").is_file())
        raise ValueError(f"handler must name a folder of mlinfra/lambdas with a handler.py; available: {available}, got: {name!r}")
    return path


class HandlerFunction(Construct):
    """A Lambda function running ``mlinfra/lambdas/<handler>/handler.py:handler``.

    :param handler: folder name under ``mlinfra/lambdas``.
    :param description: what the function does.
    :param environment: environment variables. :default: none besides Powertools' service name
    :param timeout: :default: 60 seconds (at most 900)
    :param memory_size: MiB. :default: 512
    :param log_retention_days: :default: 90
    :param encryption_key: key for the log group and DLQ. :default: a new rotated key
    :param vpc_subnets / vpc / security_groups: run inside a VPC. :default: not in a VPC
    :param reserved_concurrency: cap on concurrent executions. :default: none
    :param dead_letter_queue: give asynchronous invocations a DLQ. :default: True
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        handler: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        timeout: cdk.Duration | None = None,
        memory_size: int = 512,
        log_retention_days: int = 90,
        encryption_key: kms.IKey | None = None,
        vpc=None,
        vpc_subnets=None,
        security_groups=None,
        reserved_concurrency: int | None = None,
        dead_letter_queue: bool = True,
    ) -> None:
        super().__init__(scope, id)
        timeout = timeout or cdk.Duration.seconds(60)
        if not cdk.Token.is_unresolved(timeout.to_seconds()) and not 1 <= timeout.to_seconds() <= MAX_TIMEOUT_SECONDS:
            raise ValueError(f"timeout must be between 1 and {MAX_TIMEOUT_SECONDS} seconds, got: {timeout.to_seconds()}")
        if not is_token(memory_size) and not 128 <= memory_size <= 10240:
            raise ValueError(f"memory_size must be between 128 and 10240 MiB, got: {memory_size}")
        code_dir = handler_dir(handler)

        self.key = encryption_key or kms.Key(
            self, "Key", enable_key_rotation=True, description=f"{handler}: logs and dead-letter queue"
        )
        limit_grants_to_aws_services(self.key)
        self.log_group = encrypted_log_group(self, "Logs", key=self.key, removal_policy=cdk.RemovalPolicy.DESTROY,
                                             retention=log_retention(log_retention_days, "log_retention_days"))
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"mlinfra {handler} handler",
        )
        self.log_group.grant_write(self.role)
        self.dead_letter_queue = (
            sqs.Queue(
                self,
                "DeadLetterQueue",
                encryption=sqs.QueueEncryption.KMS,
                encryption_master_key=self.key,
                enforce_ssl=True,
                retention_period=cdk.Duration.days(14),
            )
            if dead_letter_queue
            else None
        )
        if self.dead_letter_queue is not None:
            acknowledge(
                self.dead_letter_queue,
                "AwsSolutions-SQS3",
                "This queue is itself the dead-letter queue of the handler's asynchronous invocations.",
            )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(code_dir), exclude=["__pycache__", "*.pyc"]),
            description=description,
            role=self.role,
            timeout=timeout,
            memory_size=memory_size,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            layers=[
                lambda_.LayerVersion.from_layer_version_arn(
                    self,
                    "Powertools",
                    POWERTOOLS_LAYER.format(partition=cdk.Aws.PARTITION, region=cdk.Aws.REGION),
                )
            ],
            environment={
                "POWERTOOLS_SERVICE_NAME": f"mlinfra-{handler.replace('_', '-')}",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **dict(environment or {}),
            },
            environment_encryption=self.key,
            dead_letter_queue=self.dead_letter_queue,
            reserved_concurrent_executions=reserved_concurrency,
            vpc=vpc,
            vpc_subnets=vpc_subnets,
            security_groups=security_groups,
        )
        if vpc is None:
            for rule in ("checkov::CKV_AWS_117", "cfn-guard::lambda_inside_vpc_check"):
                acknowledge(self.function, rule, "The handler calls only AWS APIs (TLS, IAM-authorized) and reaches no "
                            "VPC resource; pass vpc= to run it in one")
        if reserved_concurrency is None:
            acknowledge(self.function, "checkov::CKV_AWS_115", "Reserved concurrency is taken from the account's "
                        "unreserved pool (accounts with a low quota refuse it); the event sources cap concurrency "
                        "instead, and reserved_concurrency= sets it")
        if self.dead_letter_queue is not None:
            acknowledge(self.dead_letter_queue, "cfn-guard::sqs_dlq_check",
                        "This queue is itself the dead-letter queue of the handler's asynchronous invocations")
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords accept no resource scoping, so tracing needs Resource '*'.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to python3.13, the version the handlers are tested on and the Powertools layer is built for; "
            "runtime upgrades are deliberate, tested changes.",
        )

    def metric_errors(self, **kwargs) -> cloudwatch.Metric:
        return self.function.metric_errors(**kwargs)

    def add_error_alarm(self, topic_action=None, threshold: int = 1) -> cloudwatch.Alarm:
        """Alarm when the function reports ``threshold`` or more errors in 5 minutes."""
        alarm = self.function.metric_errors(period=cdk.Duration.minutes(5)).create_alarm(
            self,
            "ErrorsAlarm",
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{self.node.path}: handler errors",
        )
        if topic_action is not None:
            alarm.add_alarm_action(topic_action)
        return alarm
