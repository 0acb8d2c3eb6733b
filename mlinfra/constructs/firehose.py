"""RawDeliveryStream: an Amazon Data Firehose (formerly Kinesis Data Firehose) stream into the raw zone.

Records arrive by direct PUT and land under ``stream=<name>/date=YYYY-MM-DD/`` (the arrival date, Firehose's
timestamp namespace) or, with ``date_field``, under the date read from each JSON record (dynamic
partitioning with a JQ metadata extraction). Objects are GZIP-compressed and encrypted with the lake key; the
stream itself is encrypted with a customer managed key; failed records go to
``errors/stream=<name>/<error type>/date=YYYY-MM-DD/``; delivery errors are logged to CloudWatch Logs.
"""

from __future__ import annotations

import enum
import re

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from constructs import Construct

from mlinfra.constructs.common import (check_between, encrypted_log_group, is_token, limit_grants_to_aws_services,
                                      log_retention, path_in_errors)
from mlinfra.domain.choices import choice
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.constructs.data_lake import IDataLake, validate_zone

__all__ = ["RawDeliveryStream", "Compression"]


class Compression(enum.StrEnum):
    """How Firehose compresses the objects it writes (``CompressionFormat``: botocore's Firehose model lists
    exactly these values; a test compares them). A ``str``: ``Compression.GZIP == "GZIP"``."""

    UNCOMPRESSED = "UNCOMPRESSED"
    GZIP = "GZIP"
    ZIP = "ZIP"
    SNAPPY = "Snappy"
    HADOOP_SNAPPY = "HADOOP_SNAPPY"

_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RawDeliveryStream(Construct):
    """A Firehose delivery stream into ``lake``'s ``zone``.

    :param lake: the lake. :param name: stream name used in the prefix (``stream=<name>/``).
    :param zone: :default: "raw"
    :param date_field: partition by this JSON field's date (first 10 characters, ``YYYY-MM-DD``) with dynamic
        partitioning. :default: None (arrival date)
    :param buffer_interval: :default: 300 seconds (60-900)
    :param buffer_size_mib: :default: 128 (64-128 with dynamic partitioning, 1-128 otherwise)
    :param compression: a ``Compression`` (or its value, ``"GZIP"``). :default: Compression.GZIP
    :param stream_key: key of the stream's server-side encryption. :default: a new rotated key
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        lake: IDataLake,
        name: str,
        zone: str = "raw",
        date_field: str | None = None,
        buffer_interval: cdk.Duration | None = None,
        buffer_size_mib: int = 128,
        compression: Compression | str = Compression.GZIP,
        stream_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, id)
        validate_zone(zone, lake.zones)
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name):
            raise ValueError(f"name must be 1-41 lower-case letters, digits or hyphens, got: {name!r}")
        if date_field is not None and not _FIELD_RE.fullmatch(date_field):
            raise ValueError(f"date_field must be a JSON field name, got: {date_field!r}")
        buffer_interval = buffer_interval or cdk.Duration.seconds(300)
        check_between("buffer_interval", buffer_interval, 60, 900, "seconds")
        low = 64 if date_field else 1
        if not is_token(buffer_size_mib) and not low <= buffer_size_mib <= 128:
            raise ValueError(f"buffer_size_mib must be {low}-128{' with dynamic partitioning' if date_field else ''}, got: {buffer_size_mib}")
        compression = choice(Compression, compression, "compression")

        bucket = lake.bucket(zone)
        self.key = stream_key or kms.Key(self, "Key", enable_key_rotation=True, description=f"Firehose stream {name}")
        limit_grants_to_aws_services(self.key)
        self.log_group = encrypted_log_group(self, "Logs", key=self.key, retention=log_retention(90),
                                             removal_policy=cdk.RemovalPolicy.DESTROY)
        log_stream = self.log_group.add_stream("S3Delivery")
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com").with_conditions(
            {"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}}))
        prefix = f"stream={name}/"
        bucket.grant_put(self.role, f"{prefix}*")
        bucket.grant_put(self.role, f"errors/{prefix}*")
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetBucketLocation", "s3:ListBucket",
                                                             "s3:ListBucketMultipartUploads"], resources=[bucket.bucket_arn]))
        if lake.encryption_key is not None:
            lake.encryption_key.grant_encrypt_decrypt(self.role)
        self.log_group.grant_write(self.role)
        acknowledge_wildcards(
            self.role, f"Writes are limited to {prefix}* and errors/{prefix}* of one bucket; KMS data-key actions to the keys.",
            actions=(*KMS_WILDCARD_ACTIONS, "s3:Abort*"), resources=(ending(f"/{prefix}*"), ending(f"/errors/{prefix}*")),
        )

        date = f"!{{partitionKeyFromQuery:date}}" if date_field else "!{timestamp:yyyy-MM-dd}"
        processing = None
        dynamic = None
        if date_field:
            dynamic = firehose.CfnDeliveryStream.DynamicPartitioningConfigurationProperty(
                enabled=True, retry_options=firehose.CfnDeliveryStream.RetryOptionsProperty(duration_in_seconds=300))
            processing = firehose.CfnDeliveryStream.ProcessingConfigurationProperty(enabled=True, processors=[
                firehose.CfnDeliveryStream.ProcessorProperty(type="MetadataExtraction", parameters=[
                    firehose.CfnDeliveryStream.ProcessorParameterProperty(
                        parameter_name="MetadataExtractionQuery", parameter_value=f"{{date: .{date_field}[0:10]}}"),
                    firehose.CfnDeliveryStream.ProcessorParameterProperty(parameter_name="JsonParsingEngine", parameter_value="JQ-1.6"),
                ]),
            ])
        self.stream = firehose.CfnDeliveryStream(
            self, "Stream",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="CUSTOMER_MANAGED_CMK", key_arn=self.key.key_arn),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=bucket.bucket_arn,
                role_arn=self.role.role_arn,
                prefix=f"{prefix}date={date}/",
                error_output_prefix=f"errors/{prefix}!{{firehose:error-output-type}}/date=!{{timestamp:yyyy-MM-dd}}/",
                compression_format=compression.value,
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(interval_in_seconds=int(buffer_interval.to_seconds()), size_in_m_bs=buffer_size_mib),
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=lake.encryption_key.key_arn)) if lake.encryption_key is not None else None,
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True, log_group_name=self.log_group.log_group_name, log_stream_name=log_stream.log_stream_name),
                dynamic_partitioning_configuration=dynamic,
                processing_configuration=processing,
            ),
        )
        self.stream.node.add_dependency(self.role)
        self.key.grant_encrypt_decrypt(self.role)

    @property
    def delivery_stream_name(self) -> str:
        return self.stream.ref

    def grant_put_records(self, grantee: iam.IGrantable) -> iam.Grant:
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["firehose:PutRecord", "firehose:PutRecordBatch"], resource_arns=[self.stream.attr_arn])
