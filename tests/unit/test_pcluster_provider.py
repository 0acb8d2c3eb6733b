"""ParallelClusterProvider: AWS's hosted provider template as a nested stack feeding the Slurm cluster's
ServiceToken; release validation; the dev environment wires it; the emulator skips it with a reason."""

from __future__ import annotations

import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from mlinfra.app import create_app
from mlinfra.config import ConfigError, load_config
from mlinfra.constructs.training_cluster import ParallelClusterProvider
from mlinfra.local_aws.emulator import unsupported_reason
from tests.helpers import new_stack


@pytest.fixture(scope="module")
def dev_training(config_file):
    """dev with its ParallelCluster turned back on (dev idles without it, on HyperPod's managed Slurm: see
    docs/cost.md); the provider wiring is dev's setting (slurm_service_token: provider)."""
    import dataclasses

    from mlinfra.config import load_config_file

    cfg = load_config_file(config_file, "dev")
    assert cfg.training.slurm_service_token == "provider"
    cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, slurm_enabled=True))
    _, platform = create_app(config=cfg, nag=False)
    return Template.from_stack(platform.extra["training"])


def test_provider_is_the_aws_hosted_template_of_the_release():
    stack = new_stack()
    provider = ParallelClusterProvider(stack, "Provider", version="3.16.1", additional_iam_policies=[
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"])
    ((logical_id, resource),) = Template.from_stack(stack).find_resources("AWS::CloudFormation::Stack").items()
    nested = resource["Properties"]
    url, variables = nested["TemplateURL"]["Fn::Sub"]
    assert url == ("https://${AWS::Region}-aws-parallelcluster.s3.${AWS::Region}.${AWS::URLSuffix}"
                   "/parallelcluster/${Version}/templates/custom_resource/cluster.yaml")
    assert variables == {"Version": "3.16.1"}
    assert nested["Parameters"] == {"AdditionalIamPolicies": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    assert stack.resolve(provider.service_token) == {"Fn::GetAtt": [logical_id, "Outputs.ServiceToken"]}


def test_dev_slurm_cluster_uses_the_nested_provider(dev_training):
    (logical_id,) = dev_training.find_resources("AWS::CloudFormation::Stack")
    (cluster,) = dev_training.find_resources("Custom::PclusterCluster").values()
    assert cluster["Properties"]["ServiceToken"] == {"Fn::GetAtt": [logical_id, "Outputs.ServiceToken"]}


@pytest.mark.parametrize("version", ["3.5.1", "2.11.9", "latest", "3.16"])
def test_release_validation(version):
    with pytest.raises(ValueError, match=f"version must be a ParallelCluster release 3.6.0 or later .* got: '{version}'"):
        ParallelClusterProvider(new_stack(), "P", version=version)


def test_custom_role_and_extra_policies_are_exclusive():
    stack = new_stack()
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    with pytest.raises(ValueError, match="pass either them or custom_lambda_role, got both"):
        ParallelClusterProvider(stack, "P", custom_lambda_role=role, additional_iam_policies=["arn:aws:iam::aws:policy/X"])


def test_config_checks_the_provider_release():
    doc = {"defaults": {"training": {"slurm_enabled": True, "slurm_service_token": "provider",
                                     "slurm_provider_version": "3.2.0"}},
           "environments": {"dev": {}}}
    with pytest.raises(ConfigError) as exc:
        load_config(doc, "dev")
    assert "training.slurm_provider_version: must be a ParallelCluster release 3.6.0 or later, got: '3.2.0'" in exc.value.errors


def test_emulator_skips_externally_hosted_nested_stacks_only():
    external = {"TemplateURL": {"Fn::Sub": ["https://${AWS::Region}-aws-parallelcluster.s3...", {"Version": "3.16.1"}]}}
    assert "hosted outside the app's CDK assets" in unsupported_reason("AWS::CloudFormation::Stack", external)
    cdk_nested = {"TemplateURL": {"Fn::Join": ["", ["https://s3.us-east-1.amazonaws.com/cdk-hnb659fds-assets-1-us-east-1/x.json"]]}}
    assert unsupported_reason("AWS::CloudFormation::Stack", cdk_nested) is None
