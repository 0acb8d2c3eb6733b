"""Network construct: subnets, endpoints, flow logs; validation."""

from __future__ import annotations

import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Match, Template

from mlinfra.app import create_app
from mlinfra.constructs.network import Network
from tests.helpers import new_stack, props


@pytest.fixture(scope="module")
def prod(prod_config):
    _, platform = create_app(config=prod_config, nag=False)
    return platform.network.network, Template.from_stack(platform.network)


def test_vpc_cidr_and_dns(prod):
    _, t = prod
    t.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.0.0.0/16", "EnableDnsHostnames": True, "EnableDnsSupport": True})


def test_private_subnets_across_azs_and_public_only_for_nat(prod):
    network, t = prod
    subnets = t.find_resources("AWS::EC2::Subnet")
    public = [s["Properties"] for k, s in subnets.items() if "public" in k]
    assert len(public) == 3  # one per AZ, NAT gateways only
    # NAT gateways carry Elastic IPs: nothing launched there gets a public address.
    assert all(s["MapPublicIpOnLaunch"] is False for s in public)
    assert sorted(s.availability_zone for s in network.private_subnets) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert len(t.find_resources("AWS::EC2::NatGateway")) == 3


def test_training_subnet_is_one_subnet_in_one_az(prod):
    network, t = prod
    training = network.training_subnet
    assert training.availability_zone == "us-east-1a"
    assert training.ipv4_cidr_block == "10.0.240.0/20"  # the last 1/16 of the VPC, never allocated by the L2
    assert training.node.path not in {s.node.path for s in network.private_subnets}
    assert [s.node.path for s in network.training_subnet_selection.subnets] == [training.node.path]
    subnets = props(t, "AWS::EC2::Subnet")
    assert [s["CidrBlock"] for s in subnets if s["AvailabilityZone"] == "us-east-1a" and s["CidrBlock"] == "10.0.240.0/20"]
    assert len(subnets) == 3 + 3 + 1  # public and private per AZ, ONE training subnet
    cidrs = [s["CidrBlock"] for s in subnets]
    assert len(set(cidrs)) == len(cidrs)


def test_training_subnet_shares_the_private_route_table_of_its_az(prod):
    network, t = prod
    private_a = next(s for s in network.private_subnets if s.availability_zone == "us-east-1a")
    assoc = [p for p in props(t, "AWS::EC2::SubnetRouteTableAssociation")
             if p["SubnetId"] == {"Ref": next(lid for lid in t.find_resources("AWS::EC2::Subnet") if lid.startswith("NetworkTrainingSubnet"))}]
    assert len(assoc) == 1
    assert assoc[0]["RouteTableId"] == cdk_resolve(network, private_a.route_table.route_table_id)


def cdk_resolve(construct, value):
    import aws_cdk as cdk

    return cdk.Stack.of(construct).resolve(value)


def test_gateway_endpoints_for_s3_and_dynamodb(prod):
    _, t = prod
    gateways = [p for p in props(t, "AWS::EC2::VPCEndpoint") if p.get("VpcEndpointType") == "Gateway"]
    services = sorted(str(p["ServiceName"]) for p in gateways)
    assert len(gateways) == 2
    assert any("s3" in s for s in services) and any("dynamodb" in s for s in services)


def test_interface_endpoints_from_config_private_dns_https_only(prod, prod_config):
    _, t = prod
    interfaces = [p for p in props(t, "AWS::EC2::VPCEndpoint") if p.get("VpcEndpointType") == "Interface"]
    assert len(interfaces) == len(prod_config.network.interface_endpoints) == 8
    assert all(p["PrivateDnsEnabled"] for p in interfaces)
    t.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": "Interface VPC endpoints: HTTPS from inside the VPC",
            "SecurityGroupIngress": [Match.object_like({"CidrIp": "10.0.0.0/16", "FromPort": 443, "ToPort": 443})],
        },
    )


def test_flow_logs_all_traffic_to_encrypted_group(prod, prod_config):
    _, t = prod
    t.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"})
    t.has_resource_properties(
        "AWS::Logs::LogGroup",
        {"RetentionInDays": prod_config.network.flow_log_retention_days, "KmsKeyId": Match.any_value()},
    )
    t.has_resource("AWS::Logs::LogGroup", {"DeletionPolicy": "Retain"})


def test_default_security_group_restricted(prod):
    _, t = prod
    assert t.find_resources("Custom::VpcRestrictDefaultSG")


def test_isolated_when_no_nat():
    stack = new_stack()
    net = Network(stack, "N", nat_gateways=0, interface_endpoints=["STS"])
    t = Template.from_stack(stack)
    assert not t.find_resources("AWS::EC2::NatGateway")
    assert not t.find_resources("AWS::EC2::InternetGateway")
    assert net.vpc.isolated_subnets and not net.vpc.public_subnets


def test_imported_vpc():
    stack = new_stack()
    vpc = ec2.Vpc.from_vpc_attributes(
        stack, "Existing", vpc_id="vpc-0123456789abcdef0", vpc_cidr_block="10.9.0.0/16",
        availability_zones=["us-east-1a", "us-east-1b"], private_subnet_ids=["subnet-1", "subnet-2"],
    )
    net = Network(stack, "N", vpc=vpc, interface_endpoints=["STS"], training_az_index=1)
    t = Template.from_stack(stack)
    assert not t.find_resources("AWS::EC2::VPC")
    assert net.training_subnet.subnet_id == "subnet-2"
    t.has_resource_properties("AWS::EC2::SecurityGroup", {"SecurityGroupIngress": [Match.object_like({"CidrIp": "10.9.0.0/16"})]})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_azs": 7}, "max_azs must be between 1 and 6, got: 7"),
        ({"nat_gateways": 3, "max_azs": 2}, r"nat_gateways must be between 0 and max_azs \(2\), got: 3"),
        ({"training_az_index": 2, "max_azs": 2}, "training_az_index must be between 0 and 1, got: 2"),
        ({"interface_endpoints": ["NOPE"]}, r"interface_endpoints: unknown service\(s\) \['NOPE'\]"),
        ({"flow_log_retention_days": 2}, "flow_log_retention_days must be one of"),
    ],
)
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Network(new_stack(), "N", **kwargs)


def test_vpc_and_props_are_exclusive():
    stack = new_stack()
    vpc = ec2.Vpc.from_vpc_attributes(stack, "V", vpc_id="vpc-1", availability_zones=["us-east-1a"])
    with pytest.raises(ValueError, match="pass either vpc .* or cidr/max_azs/nat_gateways"):
        Network(stack, "N", vpc=vpc, cidr="10.1.0.0/16")


def test_cidr_with_host_bits_is_refused_with_the_aligned_block():
    stack = new_stack()
    with pytest.raises(ValueError, match=r"^TestStack/N: cidr: has host bits set .* use 10\.117\.48\.0/20, got: '10\.117\.50\.0/20'$"):
        Network(stack, "N", cidr="10.117.50.0/20")
