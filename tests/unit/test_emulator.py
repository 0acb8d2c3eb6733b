"""The emulator template rewrite: unsupported types removed, references replaced, nothing else touched."""

from __future__ import annotations

from mlinfra.local_aws.emulator import PLACEHOLDER, rewrite_template, supported_types, unsupported_reason


def test_support_is_read_from_moto():
    types = supported_types()
    assert "AWS::S3::Bucket" in types and "AWS::SageMaker::Endpoint" in types
    assert unsupported_reason("AWS::S3::Bucket") is None
    assert "no CloudFormation support" in unsupported_reason("AWS::FSx::DataRepositoryAssociation")
    # created through moto's service API instead (api_models), so not removed
    assert unsupported_reason("AWS::FSx::FileSystem") is None and "AWS::Glue::Database" in types
    assert "custom resource" in unsupported_reason("Custom::PclusterCluster")
    assert unsupported_reason("AWS::CDK::Metadata") == "CDK bookkeeping, not a cloud resource"
    assert unsupported_reason("AWS::Batch::JobDefinition", {"Type": "container"}) is None
    assert "multi-node" in unsupported_reason("AWS::Batch::JobDefinition", {"Type": "multinode"})


def test_rewrite_removes_and_replaces_references():
    template = {
        "Resources": {
            "Fs": {"Type": "AWS::FSx::DataRepositoryAssociation", "Properties": {}},
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {}},
            "Param": {
                "Type": "AWS::SSM::Parameter",
                "DependsOn": ["Fs", "Bucket"],
                "Properties": {
                    "Name": "/x",
                    "Value": {"Fn::Join": ["", [{"Fn::GetAtt": ["Fs", "DNSName"]}, "/", {"Ref": "Bucket"}]]},
                    "Description": {"Fn::Sub": "fs ${Fs} at ${Fs.DNSName} for ${Bucket}"},
                },
            },
            "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {}, "Tags": [{"Key": "a", "Value": "b"}]}},
        },
        "Outputs": {"FsId": {"Value": {"Ref": "Fs"}}, "BucketName": {"Value": {"Ref": "Bucket"}}},
    }
    rewrite = rewrite_template(template)
    out, skipped = rewrite.template, rewrite.skipped
    assert rewrite.adjusted == {"Param": "points at placeholder(s) for what the emulator does not create: Fs"}
    assert [(s.logical_id, s.type) for s in skipped] == [("Fs", "AWS::FSx::DataRepositoryAssociation")]
    assert "Fs" not in out["Resources"] and "Fs" in template["Resources"]  # the input is not modified
    param = out["Resources"]["Param"]
    assert param["DependsOn"] == ["Bucket"]
    assert param["Properties"]["Value"] == {"Fn::Join": ["", [PLACEHOLDER.format("Fs"), "/", {"Ref": "Bucket"}]]}
    assert param["Properties"]["Description"] == {
        "Fn::Sub": f"fs {PLACEHOLDER.format('Fs')} at {PLACEHOLDER.format('Fs')} for ${{Bucket}}"
    }
    assert out["Outputs"]["FsId"]["Value"] == PLACEHOLDER.format("Fs")
    assert out["Outputs"]["BucketName"]["Value"] == {"Ref": "Bucket"}
    assert out["Resources"]["Key"]["Properties"]["Tags"] == [{"TagKey": "a", "TagValue": "b"}]


def test_event_rule_targets_moto_cannot_deliver_are_dropped_and_noted():
    template = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {}},
            "Rule": {"Type": "AWS::Events::Rule", "Properties": {"Targets": [
                {"Id": "q", "Arn": {"Fn::GetAtt": ["Queue", "Arn"]}},
                {"Id": "m", "Arn": {"Ref": "Machine"}},
            ]}},
            "OnlyMachine": {"Type": "AWS::Events::Rule", "Properties": {"Targets": [{"Id": "m", "Arn": {"Ref": "Machine"}}]}},
        }
    }
    rewrite = rewrite_template(template)
    rule = rewrite.template["Resources"]["Rule"]["Properties"]
    assert [t["Id"] for t in rule["Targets"]] == ["q"]
    assert "Targets" not in rewrite.template["Resources"]["OnlyMachine"]["Properties"]
    assert "AWS::StepFunctions::StateMachine target(s)" in rewrite.adjusted["Rule"]
    assert set(rewrite.adjusted) == {"Rule", "OnlyMachine"}


def test_ssm_parameter_tags_take_the_shape_moto_reads():
    """moto reads AWS::SSM::Parameter Tags as a Key/Value list; CloudFormation writes a map (issue 12's ModelPointer
    parameters carry the app's tags)."""
    import json

    import boto3
    from moto import mock_aws

    from mlinfra.local_aws.emulator import rewrite_template

    template = {"Resources": {"P": {"Type": "AWS::SSM::Parameter", "Properties": {
        "Name": "/a/b", "Type": "String", "Value": "v", "Tags": {"project": "mlinfra"}}}}}
    out = rewrite_template(template).template
    assert out["Resources"]["P"]["Properties"]["Tags"] == [{"Key": "project", "Value": "mlinfra"}]
    with mock_aws():
        cfn = boto3.client("cloudformation", "us-east-1")
        cfn.create_stack(StackName="s", TemplateBody=json.dumps(out))
        assert boto3.client("ssm", "us-east-1").get_parameter(Name="/a/b")["Parameter"]["Value"] == "v"
