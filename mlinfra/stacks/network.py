"""NetworkStack: the VPC and its endpoints (stateless: no data lives here)."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from mlinfra.config import PlatformConfig
from mlinfra.constructs.network import Network
from mlinfra.stacks.base import PlatformStack


class NetworkStack(PlatformStack):
    def __init__(self, scope: Construct, *, config: PlatformConfig) -> None:
        super().__init__(scope, "network", config=config, description="VPC, subnets, endpoints and flow logs")
        net = config.network
        if net.vpc_id:
            vpc = ec2.Vpc.from_lookup(self, "ImportedVpc", vpc_id=net.vpc_id)
            self.network = Network(
                self, "Network", vpc=vpc, training_az_index=net.training_az_index,
                interface_endpoints=net.interface_endpoints, flow_log_retention_days=net.flow_log_retention_days,
            )
        else:
            self.network = Network(
                self,
                "Network",
                cidr=net.cidr,
                max_azs=net.max_azs,
                nat_gateways=net.nat_gateways,
                training_az_index=net.training_az_index,
                interface_endpoints=net.interface_endpoints,
                flow_log_retention_days=net.flow_log_retention_days,
            )
