"""The cost estimator (issue 16): known answers hand-computed from the shipped table, unknowns with reasons,
the assembly reader, the report, --diff, --max-idle, --refresh (botocore Stubber) and the CostConfig rules.

Pure: these tests build templates as dicts and never import aws_cdk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlinfra.domain.cost import PriceTable, diff, estimate, price_template, read_assembly, resource_types
from mlinfra.domain.cost import cli as cost_cli
from mlinfra.domain.cost.pricers import PRICERS
from mlinfra.domain.cost.prices import parse_rows

H = 730.0
TABLE = PriceTable.shipped()


def price(resources: dict, region: str = "us-east-1", **kw):
    items = price_template({"Resources": resources}, stack="s", region=region, prices=TABLE, **kw)
    return {i.logical_id: i for i in items}


# --------------------------------------------------------------------------------------------------
# known answers (us-east-1 rows of mlinfra/data/prices.csv)
# --------------------------------------------------------------------------------------------------

def test_nat_gateway_and_its_public_ip():
    items = price({"Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {}},
                   "Ip": {"Type": "AWS::EC2::EIP", "Properties": {}}})
    assert items["Nat"].idle_usd == pytest.approx(0.045 * H)  # 32.85
    assert items["Ip"].idle_usd == pytest.approx(0.005 * H)  # 3.65
    assert [(r.usd, r.unit) for r in items["Nat"].per_use] == [(0.045, "GB")]


def test_interface_endpoint_is_priced_per_az_and_gateway_endpoint_is_free():
    items = price({
        "Sts": {"Type": "AWS::EC2::VPCEndpoint", "Properties": {
            "VpcEndpointType": "Interface", "ServiceName": "com.amazonaws.us-east-1.sts",
            "SubnetIds": [{"Ref": "A"}, {"Ref": "B"}, {"Ref": "C"}]}},
        "S3": {"Type": "AWS::EC2::VPCEndpoint", "Properties": {"VpcEndpointType": "Gateway", "ServiceName": "x.s3"}},
    })
    assert items["Sts"].idle_usd == pytest.approx(3 * 0.01 * H)  # 21.90
    assert items["S3"].idle_usd == 0 and items["S3"].unknown is None


def test_region_aware_prices_and_a_missing_region_is_unknown_not_zero():
    nat = {"Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {}}}
    assert price(nat, region="eu-west-1")["Nat"].idle_usd == pytest.approx(0.048 * H)
    item = price(nat, region="ap-south-2")["Nat"]
    assert item.idle_usd == 0 and "no price for 'ec2.nat_gateway' in ap-south-2" in item.unknown
    assert "--refresh" in item.unknown


def test_transfer_server_per_protocol():
    items = price({"Sftp": {"Type": "AWS::Transfer::Server", "Properties": {"Protocols": ["SFTP", "FTPS"]}},
                   "Default": {"Type": "AWS::Transfer::Server", "Properties": {}}})
    assert items["Sftp"].idle_usd == pytest.approx(2 * 0.30 * H)  # 438.00
    assert items["Default"].idle_usd == pytest.approx(0.30 * H)  # 219.00 (SFTP by default)


@pytest.mark.parametrize("lustre, storage, capacity, expected", [
    ({"DeploymentType": "PERSISTENT_2", "PerUnitStorageThroughput": 1000}, "SSD", 2400, 0.60 * 2400),
    ({"DeploymentType": "PERSISTENT_2", "PerUnitStorageThroughput": 125}, "SSD", 1200, 0.145 * 1200),
    ({"DeploymentType": "SCRATCH_2"}, "SSD", 1200, 0.14 * 1200),
    ({"DeploymentType": "PERSISTENT_1", "PerUnitStorageThroughput": 12}, "HDD", 6000, 0.025 * 6000),
])
def test_lustre_by_type_tier_and_capacity(lustre, storage, capacity, expected):
    item = price({"Fs": {"Type": "AWS::FSx::FileSystem", "Properties": {
        "FileSystemType": "LUSTRE", "StorageCapacity": capacity, "StorageType": storage,
        "LustreConfiguration": lustre}}})["Fs"]
    assert item.idle_usd == pytest.approx(expected) and item.unknown is None


def test_lustre_user_provisioned_metadata_is_flagged_unknown_with_the_storage_priced():
    item = price({"Fs": {"Type": "AWS::FSx::FileSystem", "Properties": {
        "FileSystemType": "LUSTRE", "StorageCapacity": 1200, "LustreConfiguration": {
            "DeploymentType": "PERSISTENT_2", "PerUnitStorageThroughput": 125,
            "MetadataConfiguration": {"Mode": "USER_PROVISIONED", "Iops": 6000}}}}})["Fs"]
    assert item.idle_usd == pytest.approx(174.0) and "metadata IOPS" in item.unknown


def test_fsx_other_than_lustre_is_unknown():
    item = price({"Fs": {"Type": "AWS::FSx::FileSystem", "Properties": {"FileSystemType": "ONTAP"}}})["Fs"]
    assert "FSx ONTAP has no pricer" in item.unknown


def _endpoint(variant: dict, *, min_capacity=None, target_value=None, config_extra=None) -> dict:
    res = {
        "Cfg": {"Type": "AWS::SageMaker::EndpointConfig",
                "Properties": {"ProductionVariants": [{"VariantName": "AllTraffic", **variant}], **(config_extra or {})}},
        "Ep": {"Type": "AWS::SageMaker::Endpoint",
               "Properties": {"EndpointConfigName": {"Fn::GetAtt": ["Cfg", "EndpointConfigName"]}}},
    }
    if min_capacity is not None:
        res["Target"] = {"Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
            "MinCapacity": min_capacity, "MaxCapacity": 4, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ResourceId": {"Fn::Join": ["", ["endpoint/", {"Fn::GetAtt": ["Ep", "EndpointName"]}, "/variant/AllTraffic"]]}}}
    if target_value is not None:
        res["Policy"] = {"Type": "AWS::ApplicationAutoScaling::ScalingPolicy", "Properties": {
            "ScalingTargetId": {"Ref": "Target"}, "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": target_value,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}}}
    return res


def test_realtime_endpoint_at_its_autoscaling_floor_with_cost_per_million():
    items = price(_endpoint({"InstanceType": "ml.m5.large", "InitialInstanceCount": 3}, min_capacity=2,
                            target_value=100))
    ep = items["Ep"]
    assert ep.idle_usd == pytest.approx(2 * 0.115 * H)  # 167.90: the floor, not the initial count
    per_million = [r for r in ep.per_use if r.unit == "1M inferences"][0]
    assert per_million.usd == pytest.approx(0.115 / (100 * 60) * 1e6)  # 19.17


def test_endpoint_without_autoscaling_uses_the_initial_count():
    ep = price(_endpoint({"InstanceType": "ml.c5.large", "InitialInstanceCount": 2}))["Ep"]
    assert ep.idle_usd == pytest.approx(2 * 0.102 * H)


def test_async_endpoint_at_zero_and_serverless_cost_nothing_idle():
    async_ep = price(_endpoint({"InstanceType": "ml.m5.large", "InitialInstanceCount": 1}, min_capacity=0,
                               config_extra={"AsyncInferenceConfig": {"OutputConfig": {}}}))["Ep"]
    assert async_ep.idle_usd == 0 and async_ep.unknown is None and "async" in async_ep.detail
    serverless = price(_endpoint({"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}))["Ep"]
    assert serverless.idle_usd == 0 and serverless.unknown is None
    assert serverless.per_use[0].usd == pytest.approx(0.00002 * 2 * 1000)


def test_pcluster_head_node_min_count_nodes_and_per_node_hour():
    item = price({"Cluster": {"Type": "Custom::PclusterCluster", "Properties": {"ClusterConfiguration": {
        "HeadNode": {"InstanceType": "m6i.2xlarge"},
        "Scheduling": {"SlurmQueues": [{"Name": "gpu", "ComputeResources": [
            {"Name": "p4d", "InstanceType": "p4d.24xlarge", "MinCount": 1, "MaxCount": 4}]}]}}}}})["Cluster"]
    expected = 0.384 * H + 40 * 0.08 + 21.9576 * H + 3.00  # head node, its root volume, 1 node, the dashboard
    assert item.idle_usd == pytest.approx(expected)
    assert [(r.usd, r.unit) for r in item.per_use] == [(21.9576, "node-hour")]


def test_batch_min_vcpus_keep_nodes_running():
    ce = {"Type": "AWS::Batch::ComputeEnvironment", "Properties": {"Type": "MANAGED", "ComputeResources": {
        "Type": "EC2", "InstanceTypes": ["p4d.24xlarge"], "MinvCpus": 0, "MaxvCpus": 384}}}
    assert price({"Ce": ce})["Ce"].idle_usd == 0
    ce["Properties"]["ComputeResources"]["MinvCpus"] = 100  # p4d.24xlarge has 96 vCPUs: 2 nodes
    assert price({"Ce": ce})["Ce"].idle_usd == pytest.approx(2 * 21.9576 * H)


def test_kms_alarms_dashboards_secrets():
    items = price({
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"EnableKeyRotation": True}},
        "One": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Errors", "Period": 60}},
        "Math": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Metrics": [
            {"Id": "e", "Expression": "a/b"}, {"Id": "a", "MetricStat": {"Period": 60}},
            {"Id": "b", "MetricStat": {"Period": 60}}]}},
        "Fast": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "X", "Period": 10}},
        "Board": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {}},
        "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {}},
    })
    assert items["Key"].idle_usd == 1.0 and "rotation" in items["Key"].detail
    assert items["One"].idle_usd == pytest.approx(0.10)
    assert items["Math"].idle_usd == pytest.approx(0.20)
    assert items["Fast"].idle_usd == pytest.approx(0.30)
    assert items["Board"].idle_usd == 3.0
    assert items["Secret"].idle_usd == pytest.approx(0.40)


def test_log_group_is_idle_only_where_a_rate_is_configured():
    res = {"Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}}}
    assert price(res)["Logs"].idle_usd == 0
    item = price(res, usage={"logs_gb_per_month": {"s/Log*": 10}})["Logs"]
    kept = 10 * 30 / 30.4
    assert item.idle_usd == pytest.approx(10 * 0.50 + kept * 0.03)


def test_a_non_literal_instance_type_is_unknown_with_the_reason():
    item = price({"I": {"Type": "AWS::EC2::Instance",
                        "Properties": {"InstanceType": {"Fn::ImportValue": "x"}}}})["I"]
    assert item.idle_usd == 0 and item.unknown.startswith("InstanceType is not known at synth time")


def test_a_parameter_default_is_resolved():
    template = {"Parameters": {"T": {"Type": "String", "Default": "t3.medium"}},
                "Resources": {"I": {"Type": "AWS::EC2::Instance", "Properties": {"InstanceType": {"Ref": "T"}}}}}
    (item,) = price_template(template, stack="s", region="us-east-1", prices=TABLE)
    assert item.idle_usd == pytest.approx(0.0416 * H)


def test_an_unlisted_type_is_unknown_with_an_actionable_message():
    item = price({"X": {"Type": "AWS::Neptune::DBCluster", "Properties": {}}})["X"]
    assert item.idle_usd == 0
    assert "AWS::Neptune::DBCluster is not in mlinfra/data/cost-resource-types.csv: add a row" in item.unknown


def test_free_types_are_not_listed_and_usage_types_show_their_rate():
    items = price({"Role": {"Type": "AWS::IAM::Role", "Properties": {}},
                   "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {}}})
    assert "Role" not in items
    assert items["Bucket"].idle_usd == 0 and items["Bucket"].per_use[0].usd == 0.023


# --------------------------------------------------------------------------------------------------
# the tables
# --------------------------------------------------------------------------------------------------

def test_every_priced_type_has_a_pricer_and_every_pricer_a_row():
    priced = {t for t, v in resource_types().items() if v.treatment == "priced"}
    assert priced == set(PRICERS)


def test_every_price_row_is_dated_and_sourced():
    for row in TABLE.rows():
        assert row.source.startswith("https://") and row.date >= "2026-01-01", row


@pytest.mark.parametrize("text, message", [
    ("key,region,usd,unit,source,date,note\nx,us-east-1,abc,hour,https://a,2026-11-30,\n", "usd must be a number"),
    ("key,region,usd,unit,source,date,note\nx,us-east-1,-1,hour,https://a,2026-11-30,\n", "usd must be >= 0"),
    ("key,region,usd,unit,source,date,note\nx,us-east-1,1,hour,,2026-11-30,\n", "missing ['source']"),
])
def test_a_bad_price_row_is_refused_with_its_line(text, message):
    with pytest.raises(ValueError, match=r"price table row 2: " + message.replace("[", r"\[").replace("]", r"\]")):
        parse_rows(text)


# --------------------------------------------------------------------------------------------------
# the assembly: nested stage assemblies, one count per deployed stack
# --------------------------------------------------------------------------------------------------

def _write_assembly(root: Path) -> Path:
    nat = {"Resources": {"Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {}}}}
    key = {"Resources": {"Key": {"Type": "AWS::KMS::Key", "Properties": {}}}}
    stage = root / "assembly-Pipeline-Prod"
    stage.mkdir(parents=True)
    (root / "net.template.json").write_text(json.dumps(nat))
    (root / "pipe.template.json").write_text(json.dumps(key))
    (stage / "dev-net.template.json").write_text(json.dumps(nat))
    (stage / "prod-net.template.json").write_text(json.dumps(nat))
    (root / "manifest.json").write_text(json.dumps({"artifacts": {
        "assembly-Pipeline-Prod": {"type": "cdk:cloud-assembly", "properties": {"directoryName": stage.name}},
        "app-net": {"type": "aws:cloudformation:stack", "environment": "aws://111111111111/us-east-1",
                    "properties": {"templateFile": "net.template.json"}},
        "app-pipeline": {"type": "aws:cloudformation:stack", "environment": "aws://111111111111/us-east-1",
                         "properties": {"templateFile": "pipe.template.json"}},
    }}))
    (stage / "manifest.json").write_text(json.dumps({"artifacts": {
        "PipelineDevnet": {"type": "aws:cloudformation:stack", "environment": "aws://111111111111/us-east-1",
                           "properties": {"templateFile": "dev-net.template.json", "stackName": "app-net"}},
        "PipelineProdnet": {"type": "aws:cloudformation:stack", "environment": "aws://222222222222/us-east-1",
                            "properties": {"templateFile": "prod-net.template.json", "stackName": "app-net"}},
    }}))
    return root


def test_nested_stage_assemblies_are_read_and_a_stack_deployed_twice_counts_once(tmp_path):
    stacks = read_assembly(_write_assembly(tmp_path / "cdk.out"))
    assert [(s.environment, s.name) for s in stacks] == [
        ("aws://111111111111/us-east-1", "app-net"), ("aws://111111111111/us-east-1", "app-pipeline"),
        ("aws://222222222222/us-east-1", "app-net")]
    report = estimate(stacks)
    assert report.idle_by_environment() == pytest.approx({"aws://111111111111/us-east-1": 0.045 * H + 1.0,
                                                          "aws://222222222222/us-east-1": 0.045 * H})
    assert report.select(account="222222222222").total_idle_usd == pytest.approx(0.045 * H)


def test_not_an_assembly_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a cloud assembly"):
        read_assembly(tmp_path)


# --------------------------------------------------------------------------------------------------
# the command: --json, --max-idle, --diff, --refresh
# --------------------------------------------------------------------------------------------------

def _run(capsys, *argv: str) -> tuple[int, str]:
    from mlinfra.cli import main

    code = main(["cost", *argv])
    return code, capsys.readouterr().out


def test_cli_json_per_stack_and_environment(tmp_path, capsys):
    out_dir = _write_assembly(tmp_path / "cdk.out")
    code, out = _run(capsys, "--assembly", str(out_dir), "--json")
    data = json.loads(out)
    assert code == 0 and data["idle_usd_month"] == pytest.approx(round(2 * 32.85 + 1.0, 2))
    assert [e["idle_usd_month"] for e in data["environments"]] == [33.85, 32.85]
    assert data["environments"][0]["stacks"][0]["resources"][0]["price_keys"] == ["ec2.nat_gateway", "ec2.nat_gateway.data"]


def test_cli_max_idle_fails_above_the_budget(tmp_path, capsys):
    out_dir = _write_assembly(tmp_path / "cdk.out")
    assert _run(capsys, "--assembly", str(out_dir), "--max-idle", "40", "--account", "111111111111")[0] == 0
    code, out = _run(capsys, "--assembly", str(out_dir), "--max-idle", "30", "--account", "111111111111")
    assert code == 1 and "FAIL: idle $33.85/month is above the budget of $30.00" in out


def test_cli_max_idle_fails_on_unknown_unless_allowed(tmp_path, capsys):
    out_dir = _write_assembly(tmp_path / "cdk.out")
    tpl = out_dir / "pipe.template.json"
    tpl.write_text(json.dumps({"Resources": {"X": {"Type": "AWS::Neptune::DBCluster"}}}))
    code, out = _run(capsys, "--assembly", str(out_dir), "--max-idle", "1000")
    assert code == 1 and "1 resource(s) unknown" in out and "UNKNOWN (1)" in out
    assert _run(capsys, "--assembly", str(out_dir), "--max-idle", "1000", "--allow-unknown")[0] == 0


def test_cli_diff_resource_by_resource(tmp_path, capsys):
    out_dir = _write_assembly(tmp_path / "cdk.out")
    _, before = _run(capsys, "--assembly", str(out_dir), "--json")
    old = tmp_path / "old.json"
    old.write_text(before)
    (out_dir / "pipe.template.json").write_text(json.dumps({"Resources": {
        "Key": {"Type": "AWS::KMS::Key", "Properties": {}},
        "Sftp": {"Type": "AWS::Transfer::Server", "Properties": {}}}}))
    code, out = _run(capsys, "--assembly", str(out_dir), "--json", "--diff", str(old))
    changes = json.loads(out)["diff"]
    assert code == 0 and changes["idle_change_usd_month"] == pytest.approx(219.0)
    assert [(c["change"], c["logical_id"], c["delta_usd_month"]) for c in changes["changes"]] == [("added", "Sftp", 219.0)]
    code, text = _run(capsys, "--assembly", str(out_dir), "--diff", str(old))
    assert "+219.00  added   app-pipeline/Sftp (AWS::Transfer::Server)" in text


def test_diff_reports_removed_and_changed():
    def report(usd):
        return {"environments": [{"environment": "e", "stacks": [{"resources": [
            {"stack": "s", "logical_id": k, "type": "T", "idle_usd_month": v} for k, v in usd.items()]}]}]}
    changes = diff(report({"A": 10.0, "B": 5.0}), report({"A": 12.5}))
    assert [(c["change"], c["logical_id"], c["delta_usd_month"]) for c in changes] == [
        ("removed", "B", -5.0), ("changed", "A", 2.5)]


def test_refresh_from_the_price_list_api_with_stubber():
    import boto3
    from botocore.stub import ANY, Stubber

    from mlinfra.domain.cost.refresh import SOURCE, refresh_table

    client = boto3.client("pricing", region_name="us-east-1")
    product = {"product": {"attributes": {"instanceType": "m6i.2xlarge", "usagetype": "BoxUsage:m6i.2xlarge"}},
               "terms": {"OnDemand": {"X.JRTCKXETXF": {"priceDimensions": {"X.JRTCKXETXF.6YS6EN2CT7": {
                   "unit": "Hrs", "pricePerUnit": {"USD": "0.4000000000"}}}}}}}
    table = PriceTable(parse_rows(
        "key,region,usd,unit,source,date,note\n"
        "ec2.m6i.2xlarge,us-east-1,0.384,hour,https://aws.amazon.com/ec2/pricing/on-demand/,2026-11-30,\n"
        "ec2.t3.medium,us-east-1,0.0416,hour,https://aws.amazon.com/ec2/pricing/on-demand/,2026-11-30,\n"
        "kms.key,*,1.00,month,https://aws.amazon.com/kms/pricing/,2026-11-30,\n"))
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [json.dumps(product)], "FormatVersion": "aws_v1"}, {
            "ServiceCode": "AmazonEC2", "Filters": ANY, "FormatVersion": "aws_v1", "MaxResults": 100})
        stub.add_response("get_products", {"PriceList": [], "FormatVersion": "aws_v1"}, {
            "ServiceCode": "AmazonEC2", "Filters": ANY, "FormatVersion": "aws_v1", "MaxResults": 100})
        fresh, notes = refresh_table(table, regions={"us-east-1"}, client=client, today="2026-12-01")
        stub.assert_no_pending_responses()
    row = fresh.get("ec2.m6i.2xlarge", "us-east-1")
    assert (row.usd, row.source, row.date) == (0.4, SOURCE, "2026-12-01")
    assert fresh.get("ec2.t3.medium", "us-east-1").usd == 0.0416  # no product: the table's row is kept
    assert any("ec2.t3.medium (us-east-1): kept the table's 2026-11-30 price" in n for n in notes)
    assert fresh.get("kms.key", "us-east-1").usd == 1.0


def test_refresh_sends_the_filters_the_price_list_api_expects():
    from mlinfra.domain.cost.refresh import query_for

    service, filters, _ = query_for("ec2.p4d.24xlarge", "us-east-1")
    assert service == "AmazonEC2"
    assert {f["Field"]: f["Value"] for f in filters} == {
        "instanceType": "p4d.24xlarge", "regionCode": "us-east-1", "operatingSystem": "Linux", "tenancy": "Shared",
        "preInstalledSw": "NA", "capacitystatus": "Used"}
    assert query_for("kms.key", "us-east-1") is None


def test_refresh_without_a_client_keeps_the_table(monkeypatch):
    import builtins

    from mlinfra.domain.cost.refresh import refresh_table

    real_import = builtins.__import__

    def no_boto3(name, *args, **kwargs):
        if name == "boto3":
            raise ImportError("no boto3")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_boto3)
    fresh, notes = refresh_table(TABLE)
    assert fresh is TABLE and "the shipped table is used" in notes[0]


def test_the_cost_command_never_imports_aws_cdk():
    import subprocess
    import sys

    code = ("import sys, mlinfra.cli; mlinfra.cli.build_parser(); import mlinfra.domain.cost.cli; "
            "assert 'aws_cdk' not in sys.modules, 'aws_cdk imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------------
# the configuration section
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, message", [
    ({"max_idle_usd": -1.0}, "cost.max_idle_usd: must be >= 0, got: -1.0"),
    ({"idle_tolerance_percent": -5.0}, "cost.idle_tolerance_percent: must be between 0 and 1000, got: -5.0"),
    ({"idle_acknowledged_usd": 12000.0}, "cost.idle_acknowledgment: set it together with cost.idle_acknowledged_usd"),
    ({"idle_acknowledgment": "bigger cache"}, "cost.idle_acknowledgment: set it together with cost.idle_acknowledged_usd"),
])
def test_cost_config_rules(fields, message):
    from mlinfra.config import CostConfig

    assert any(e.startswith(message) for e in CostConfig(**fields).validate())


def test_cost_config_ceiling_is_the_baseline_plus_tolerance_or_the_acknowledged_figure():
    from mlinfra.config import CostConfig

    assert CostConfig().idle_ceiling_usd() is None
    assert CostConfig(idle_baseline_usd=1000.0).idle_ceiling_usd() == pytest.approx(1100.0)
    assert CostConfig(idle_baseline_usd=1000.0, idle_acknowledged_usd=1500.0,
                      idle_acknowledgment="x").idle_ceiling_usd() == 1500.0


def test_hyperpod_groups_run_around_the_clock_and_a_group_at_zero_needs_no_price():
    item = price({"Hp": {"Type": "AWS::SageMaker::Cluster", "Properties": {"InstanceGroups": [
        {"InstanceGroupName": "controller", "InstanceType": "ml.t3.medium", "InstanceCount": 1},
        {"InstanceGroupName": "gpu", "InstanceType": "ml.p5.48xlarge", "InstanceCount": 0}]}}})["Hp"]
    assert item.idle_usd == pytest.approx(0.05 * H) and item.unknown is None  # 36.50
    item = price({"Hp": {"Type": "AWS::SageMaker::Cluster", "Properties": {"InstanceGroups": [
        {"InstanceGroupName": "gpu", "InstanceType": "ml.p5.48xlarge", "InstanceCount": 2}]}}})["Hp"]
    assert "no price for 'sagemaker.hyperpod.ml.p5.48xlarge'" in item.unknown


def test_nested_stacks_parallelcluster_provider_is_free_and_an_unknown_template_is_unknown():
    provider = {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": {"Fn::Sub": [
        "https://${AWS::Region}-aws-parallelcluster.s3.${AWS::Region}.${AWS::URLSuffix}/parallelcluster/${Version}"
        "/templates/custom_resource/cluster.yaml", {"Version": "3.16.1"}]}}}
    other = {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "https://example.com/x.yaml"}}
    items = price({"Provider": provider, "Other": other})
    assert items["Provider"].idle_usd == 0 and items["Provider"].unknown is None
    assert "nested stack whose template is not in the assembly" in items["Other"].unknown


def test_nested_stack_in_the_assembly_is_priced_from_its_template(tmp_path):
    (tmp_path / "child.nested.template.json").write_text(json.dumps(
        {"Resources": {"Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {}}}}))
    items = price({"Child": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "x"},
                             "Metadata": {"aws:asset:path": "child.nested.template.json"}}}, directory=tmp_path)
    assert items["Child"].idle_usd == pytest.approx(0.045 * H)


def test_a_state_machine_shows_the_training_job_rate_from_its_definition():
    definition = {"Fn::Join": ["", ['{"StartAt":"Train","States":{"Train":{"Type":"Task","Parameters":{',
                                    '"ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1}}}}}']]}
    item = price({"Sm": {"Type": "AWS::StepFunctions::StateMachine",
                         "Properties": {"DefinitionString": definition}}})["Sm"]
    assert item.idle_usd == 0
    assert [(r.usd, r.unit) for r in item.per_use if r.category == "training"] == [(1.408, "instance-hour")]


def test_cli_a_bad_price_table_is_a_usage_error(tmp_path, capsys):
    from mlinfra.cli import main

    bad = tmp_path / "prices.csv"
    bad.write_text("key,region,usd,unit,source,date,note\nx,us-east-1,abc,hour,https://a,2026-11-30,\n")
    assert main(["cost", "--prices", str(bad)]) == 2
    assert "--prices: price table row 2: usd must be a number" in capsys.readouterr().err


def test_cli_without_cdk_json_says_how_to_proceed(tmp_path, capsys):
    from mlinfra.cli import main

    assert main(["cost", "--app-dir", str(tmp_path), "--synth"]) == 1
    assert f"{tmp_path}: no cdk.json to synthesize (pass --assembly DIR)" in capsys.readouterr().err


def test_a_daily_scheduled_floor_is_time_weighted():
    from mlinfra.domain.cost.pricers import daily_floor

    res = _endpoint({"InstanceType": "ml.c6i.xlarge", "InitialInstanceCount": 2}, min_capacity=2)
    res["Target"]["Properties"]["ScheduledActions"] = [
        {"ScheduledActionName": "night", "Schedule": "cron(0 22 * * ? *)", "ScalableTargetAction": {"MinCapacity": 1}},
        {"ScheduledActionName": "day", "Schedule": "cron(0 6 * * ? *)", "ScalableTargetAction": {"MinCapacity": 2}}]
    ep = price(res)["Ep"]
    assert ep.idle_usd == pytest.approx(0.204 * H * (8 * 1 + 16 * 2) / 24)  # 248.20: 8 h at 1, 16 h at 2
    assert "averaged over its daily schedule" in ep.detail
    assert daily_floor([{"Schedule": "rate(1 hour)", "ScalableTargetAction": {"MinCapacity": 1}}]) is None
    assert daily_floor([{"Schedule": "cron(0 6 ? * MON-FRI *)", "ScalableTargetAction": {"MinCapacity": 1}}]) is None


def test_hyperpod_training_plan_and_extra_volumes_are_unknown_not_zero() -> None:
    from mlinfra.domain.cost.pricers import Context, NotLiteral, sagemaker_cluster
    from mlinfra.domain.cost.prices import PriceTable

    ctx = Context(template={}, region="us-east-1", prices=PriceTable([]), stack="s")
    base = {"InstanceGroupName": "gpu", "InstanceType": "ml.t3.medium", "InstanceCount": 1}
    for extra, reason in (({"TrainingPlanArn": "arn:aws:sagemaker:us-east-1:123456789012:training-plan/p"},
                           "training plan"),
                          ({"InstanceStorageConfigs": [{"EbsVolumeConfig": {"VolumeSizeInGB": 500}}]}, "EBS")):
        resource = {"Properties": {"InstanceGroups": [{**base, **extra}]}}
        with pytest.raises(NotLiteral, match=reason):
            sagemaker_cluster(ctx, "Cluster", resource)
