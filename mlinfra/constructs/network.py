"""Network: the VPC the platform runs in.

Private subnets across AZs for serving, EFS and endpoints; one designated single-AZ *training* subnet
(EFA traffic and an FSx for Lustre file system must share one subnet and AZ); gateway endpoints for S3 and
DynamoDB; interface endpoints for the AWS APIs the platform calls; flow logs to an encrypted log group.
Pass ``vpc`` to import an existing VPC instead of creating one (never both).
"""

from __future__ import annotations

import ipaddress
from typing import Sequence

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from constructs import Construct

from mlinfra.constructs.common import acknowledge, encrypted_log_group, limit_grants_to_aws_services, log_retention, path_in_errors, require_literal
from mlinfra.domain.network import DEFAULT_INTERFACE_ENDPOINTS, INTERFACE_ENDPOINT_NAMES, LOG_RETENTION_DAYS, cidr_error

__all__ = ["Network", "DEFAULT_INTERFACE_ENDPOINTS", "INTERFACE_ENDPOINT_NAMES", "PRIVATE_SUBNET_GROUP"]

PRIVATE_SUBNET_GROUP = "private"


class Network(Construct):
    """A VPC for ML workloads, or an imported one, with the handles the other constructs need.

    :param vpc: an existing VPC to use. :default: None (a VPC is created from the props below)
    :param cidr: CIDR of a created VPC. :default: 10.0.0.0/16
    :param max_azs: AZs of a created VPC. :default: 2
    :param nat_gateways: NAT gateways (0: isolated private subnets, AWS reached through endpoints). :default: 1
    :param training_az_index: which of the VPC's AZs holds the training subnet. :default: 0
    :param interface_endpoints: ``InterfaceVpcEndpointAwsService`` attribute names. :default: SageMaker API and
        runtime, STS, ECR (api and docker), CloudWatch Logs
    :param flow_log_retention: flow log retention in days. :default: 90
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc | None = None,
        cidr: str | None = None,
        max_azs: int | None = None,
        nat_gateways: int | None = None,
        training_az_index: int = 0,
        interface_endpoints: Sequence[str] = DEFAULT_INTERFACE_ENDPOINTS,
        flow_log_retention_days: int = 90,
    ) -> None:
        super().__init__(scope, id)
        _validate(vpc, cidr, max_azs, nat_gateways, training_az_index, interface_endpoints, flow_log_retention_days)

        if vpc is not None:
            self.vpc = vpc
        else:
            nat = 1 if nat_gateways is None else nat_gateways
            network = ipaddress.ip_network(cidr or "10.0.0.0/16")
            # Private subnets get 1/16 of the VPC each, public (NAT only) 1/256. The L2 allocates from the start
            # of the range (at most 6 AZs x 17/256), so the LAST 1/16 block is always free: the training subnet.
            private_mask = network.prefixlen + 4
            private_type = ec2.SubnetType.PRIVATE_WITH_EGRESS if nat > 0 else ec2.SubnetType.PRIVATE_ISOLATED
            subnets = [ec2.SubnetConfiguration(name=PRIVATE_SUBNET_GROUP, subnet_type=private_type, cidr_mask=private_mask)]
            if nat > 0:
                subnets.insert(
                    # NAT gateways only: they carry Elastic IPs, so nothing launched here gets a public address.
                    0, ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=network.prefixlen + 8,
                                               map_public_ip_on_launch=False)
                )
            self.vpc = ec2.Vpc(
                self,
                "Vpc",
                ip_addresses=ec2.IpAddresses.cidr(cidr or "10.0.0.0/16"),
                max_azs=max_azs or 2,
                nat_gateways=nat,
                subnet_configuration=subnets,
                restrict_default_security_group=True,
                gateway_endpoints={
                    "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                    "DynamoDB": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
                },
            )
            key = kms.Key(
                self,
                "FlowLogKey",
                enable_key_rotation=True,
                description="Encrypts the VPC flow log group",
                removal_policy=cdk.RemovalPolicy.RETAIN,
            )
            log_group = encrypted_log_group(self, "FlowLogs", key=key, removal_policy=cdk.RemovalPolicy.RETAIN,
                                            retention=log_retention(flow_log_retention_days, "flow_log_retention_days"))
            self.vpc.add_flow_log(
                "FlowLog",
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group),
                traffic_type=ec2.FlowLogTrafficType.ALL,
            )
            self.flow_log_group = log_group
            limit_grants_to_aws_services(key)
            provider = cdk.Stack.of(self).node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
            if provider is not None:  # aws-cdk-lib's singleton that empties the default security group at deploy
                for rule in ("checkov::CKV_AWS_115", "checkov::CKV_AWS_116", "checkov::CKV_AWS_117",
                             "cfn-guard::lambda_inside_vpc_check"):
                    acknowledge(provider, rule, "aws-cdk-lib's deploy-time provider that removes the default security "
                                "group's rules; it runs once per deployment and calls only the EC2 API")
            self._training_subnet = self._add_training_subnet(
                str(list(network.subnets(new_prefix=private_mask))[-1]), training_az_index
            )

        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface VPC endpoints: HTTPS from inside the VPC",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(
            ec2.Peer.ipv4(cidr or "10.0.0.0/16" if vpc is None else vpc.vpc_cidr_block), ec2.Port.tcp(443), "HTTPS from the VPC to AWS APIs"
        )
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        for name in interface_endpoints:
            self.interface_endpoints[name] = self.vpc.add_interface_endpoint(
                name.title().replace("_", ""),
                service=getattr(ec2.InterfaceVpcEndpointAwsService, name),
                private_dns_enabled=True,
                open=False,  # the endpoint security group above already admits HTTPS from the VPC
                security_groups=[self.endpoint_security_group],
                subnets=ec2.SubnetSelection(subnets=self.private_subnets),
            )

        if vpc is not None:
            self._training_subnet = self.private_subnets[min(training_az_index, len(self.private_subnets) - 1)]
        for child in self.node.find_all():
            if isinstance(child, ec2.CfnSubnet):
                # cfn-lint W3010 flags literal AZ names. They are deliberate: the environment's AZs are pinned
                # in its configuration so the training subnet, the Lustre file system and EFA placement land in
                # one known AZ, and so synth needs no account lookup.
                child.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3010"]}})

    @property
    def private_subnets(self) -> list[ec2.ISubnet]:
        """Private subnets across AZs (serving, EFS, endpoints)."""
        try:
            return self.vpc.select_subnets(subnet_group_name=PRIVATE_SUBNET_GROUP).subnets
        except Exception:  # an imported VPC without our group names: its private (or isolated) subnets
            return self.vpc.private_subnets or self.vpc.isolated_subnets

    @property
    def private_subnet_selection(self) -> ec2.SubnetSelection:
        return ec2.SubnetSelection(subnets=self.private_subnets)

    def _add_training_subnet(self, cidr_block: str, az_index: int) -> ec2.ISubnet:
        """One subnet in one AZ, sharing the route table (NAT route, gateway endpoints) of that AZ's private
        subnet. An imported VPC's training subnet is its private subnet in ``training_az_index``'s AZ."""
        private = self.private_subnets[az_index]
        subnet = ec2.CfnSubnet(
            self,
            "TrainingSubnet",
            vpc_id=self.vpc.vpc_id,
            cidr_block=cidr_block,
            availability_zone=private.availability_zone,
            map_public_ip_on_launch=False,
            tags=[cdk.CfnTag(key="Name", value=f"{self.node.path}/TrainingSubnet")],
        )
        ec2.CfnSubnetRouteTableAssociation(
            self, "TrainingSubnetRouteTable", subnet_id=subnet.ref, route_table_id=private.route_table.route_table_id
        )
        return ec2.Subnet.from_subnet_attributes(
            self,
            "TrainingSubnetRef",
            subnet_id=subnet.ref,
            availability_zone=private.availability_zone,
            route_table_id=private.route_table.route_table_id,
            ipv4_cidr_block=cidr_block,
        )

    @property
    def training_subnet(self) -> ec2.ISubnet:
        """The single-AZ subnet for EFA clusters and the Lustre cache (one subnet, one AZ)."""
        return self._training_subnet

    @property
    def training_subnet_selection(self) -> ec2.SubnetSelection:
        return ec2.SubnetSelection(subnets=[self.training_subnet])


def _validate(vpc, cidr, max_azs, nat_gateways, training_az_index, interface_endpoints, retention) -> None:
    if vpc is not None and any(v is not None for v in (cidr, max_azs, nat_gateways)):
        raise ValueError(
            "Network: pass either vpc (an existing VPC) or cidr/max_azs/nat_gateways (to create one), not both"
        )
    # The subnets (and the training subnet's block) are carved from these at synth time.
    for prop, value in (("cidr", cidr), ("max_azs", max_azs), ("nat_gateways", nat_gateways),
                        ("training_az_index", training_az_index), ("flow_log_retention_days", retention)):
        require_literal(prop, value, "the VPC's subnets, NAT gateways and flow log are laid out at synth time")
    if cidr is not None and (error := cidr_error(cidr)):
        raise ValueError(error)
    if max_azs is not None and not 1 <= max_azs <= 6:
        raise ValueError(f"max_azs must be between 1 and 6, got: {max_azs}")
    azs = max_azs or 2
    if nat_gateways is not None and not 0 <= nat_gateways <= azs:
        raise ValueError(f"nat_gateways must be between 0 and max_azs ({azs}), got: {nat_gateways}")
    if not 0 <= training_az_index < (azs if vpc is None else 6):
        raise ValueError(f"training_az_index must be between 0 and {azs - 1}, got: {training_az_index}")
    unknown = [e for e in interface_endpoints if e not in INTERFACE_ENDPOINT_NAMES]
    if unknown:
        raise ValueError(f"interface_endpoints: unknown service(s) {unknown}; allowed: {list(INTERFACE_ENDPOINT_NAMES)}")
    if retention not in LOG_RETENTION_DAYS:
        raise ValueError(f"flow_log_retention_days must be one of {LOG_RETENTION_DAYS}, got: {retention}")
