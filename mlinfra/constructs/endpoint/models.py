"""Models, containers, production variants, data capture and async config of the endpoint config."""

from __future__ import annotations

from typing import Sequence

from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_ssm as ssm

from mlinfra.constructs.endpoint.props import (
    ModelContainer,
    ProductionVariant,
    ServerlessSettings,
    AsyncInference,
    DataCapture,
    _secs,
)


class _ModelsMixin:
    """Models, containers, production variants, data capture and async config of the endpoint config."""

    def _make_model(self, cid: str, model: ModelContainer | None, containers: Sequence[ModelContainer] | None,
                    multi_model: bool = False) -> sagemaker.CfnModel:
        key = id(model) if model is not None else id(containers)
        if key in self._models:
            return self._models[key]
        if containers:
            cfn = sagemaker.CfnModel(
                self, cid, execution_role_arn=self.role.role_arn,
                containers=[self._container(c, False) for c in containers],
                inference_execution_config=sagemaker.CfnModel.InferenceExecutionConfigProperty(mode="Serial"),
                enable_network_isolation=self.network_isolation,
                vpc_config=self._model_vpc(),
            )
        else:
            assert model is not None
            cfn = sagemaker.CfnModel(
                self, cid, execution_role_arn=self.role.role_arn,
                primary_container=self._container(model, multi_model),
                enable_network_isolation=self.network_isolation,
                vpc_config=self._model_vpc(),
            )
        if isinstance(self.role, iam.Role):
            cfn.node.add_dependency(self.role)
        self._models[key] = cfn
        self.models.append(cfn)
        return cfn

    def _model_vpc(self) -> sagemaker.CfnModel.VpcConfigProperty | None:
        if self.vpc_config is None:
            return None
        return sagemaker.CfnModel.VpcConfigProperty(
            security_group_ids=self.vpc_config["SecurityGroupIds"], subnets=self.vpc_config["Subnets"]
        )

    def _container(self, c: ModelContainer, multi_model: bool) -> sagemaker.CfnModel.ContainerDefinitionProperty:
        if c.pointer is not None:
            return self._pointer_container(c)
        if c.model_data is not None and c.model_data.bucket is not None:
            key = c.model_data.key or ""
            c.model_data.bucket.grant_read(self.role, self._objects(c.model_data.bucket, f"{key}*")
                                           if key.endswith("/") or multi_model else key)
        if c.image_uri:
            self._grant_image_pull(c.image_uri)
        if c.model_package_arn:
            self._grant_image_pull(None)
        return sagemaker.CfnModel.ContainerDefinitionProperty(
            image=c.image_uri,
            model_data_url=c.model_data.uri if c.model_data else None,
            model_package_name=c.model_package_arn,
            environment=dict(c.environment) if c.environment else None,
            container_hostname=c.hostname,
            mode="MultiModel" if multi_model else None,
        )

    def _variant_property(self, v: ProductionVariant, model: sagemaker.CfnModel,
                          serverless: ServerlessSettings | None) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=v.name,
            model_name=model.attr_model_name,
            instance_type=v.instance_type,
            initial_instance_count=v.initial_instance_count if v.instance_type else None,
            initial_variant_weight=v.initial_weight,
            volume_size_in_gb=v.volume_size_gb,
            model_data_download_timeout_in_seconds=_secs(v.model_data_download_timeout),
            container_startup_health_check_timeout_in_seconds=_secs(v.startup_health_check_timeout),
            serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                max_concurrency=serverless.max_concurrency, memory_size_in_mb=serverless.memory_size_mb,
                provisioned_concurrency=serverless.provisioned_concurrency,
            ) if serverless is not None and v.instance_type is None else None,
        )

    def _data_capture(self, dc: DataCapture | None, role: iam.IRole):
        if dc is None:
            return None
        dc.bucket.grant_put(role, self._objects(dc.bucket, f"{dc.prefix}*"))
        key = dc.kms_key or dc.bucket.encryption_key
        options = [sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode=m)
                   for m, on in (("Input", dc.capture_request), ("Output", dc.capture_response)) if on]
        return sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
            capture_options=options,
            destination_s3_uri=f"s3://{dc.bucket.bucket_name}/{dc.prefix}",
            initial_sampling_percentage=dc.sampling_percentage,
            enable_capture=True,
            kms_key_id=key.key_arn if key is not None else None,
        )

    def _async_config(self, a: AsyncInference, role: iam.IRole):
        bucket = a.output_bucket
        assert bucket is not None  # validated
        bucket.grant_put(role, self._objects(bucket, f"{a.output_prefix}*"))
        bucket.grant_put(role, self._objects(bucket, f"{a.failure_prefix}*"))
        bucket.grant_read(role, self._objects(bucket, f"{a.input_prefix}*"))
        self.encryption_key.grant_encrypt_decrypt(role)
        notification = None
        if a.success_topic or a.error_topic:
            for t in (a.success_topic, a.error_topic):
                if t is not None:
                    t.grant_publish(role)
            notification = sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                success_topic=a.success_topic.topic_arn if a.success_topic else None,
                error_topic=a.error_topic.topic_arn if a.error_topic else None,
            )
        self.async_output_uri = f"s3://{bucket.bucket_name}/{a.output_prefix}"
        self.async_input_uri = f"s3://{bucket.bucket_name}/{a.input_prefix}"
        return sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
            output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                s3_output_path=self.async_output_uri,
                s3_failure_path=f"s3://{bucket.bucket_name}/{a.failure_prefix}",
                kms_key_id=self.encryption_key.key_arn,
                notification_config=notification,
            ),
            client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                max_concurrent_invocations_per_instance=a.max_concurrent_invocations_per_instance,
            ) if a.max_concurrent_invocations_per_instance else None,
        )

    def _pointer_container(self, c: ModelContainer) -> sagemaker.CfnModel.ContainerDefinitionProperty:
        """The pointer's image and artifact, resolved by CloudFormation at every deploy (SSM-typed parameters):
        a deploy after a pipeline rollout keeps the rolled-out model (see ``ownership``)."""
        p = c.pointer
        self.model_pointer = p
        image = ssm.StringParameter.value_for_string_parameter(self, p.image_parameter_name)
        url = ssm.StringParameter.value_for_string_parameter(self, p.model_data_parameter_name)
        # Any artifact of the model bucket may become the served one; any repository of the account its image.
        p.model_bucket.grant_read(self.role, self._objects(p.model_bucket, "*"))
        self._grant_image_pull(None)
        return sagemaker.CfnModel.ContainerDefinitionProperty(
            image=image, model_data_url=url, environment=dict(c.environment) if c.environment else None)
