#!/usr/bin/env python3
"""Two lakes, two teams: a research lake (customer managed KMS key) and a production lake, each in its own
stateful stack, one VPC, and a team on each lake. Uses only the installed ``mlinfra`` package.

    cdk synth        # or: python app.py
"""

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from mlinfra import DataLake, Network, TeamEnvironment

app = cdk.App()
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
env = cdk.Environment(account="222222222222", region="us-west-2")

network_stack = cdk.Stack(app, "ml-network", env=env)
network = Network(network_stack, "Network", cidr="10.40.0.0/16", max_azs=2, nat_gateways=1)

lakes = {}
for name in ("research", "production"):
    lake_stack = cdk.Stack(app, f"ml-{name}-lake", env=env, description=f"The {name} lake (RETAINED)")
    lakes[name] = DataLake(lake_stack, "Lake", name_prefix=name)

teams_stack = cdk.Stack(app, "ml-teams", env=env, description="Teams on the research and production lakes")
TeamEnvironment(
    teams_stack, "Research", team_name="research", cost_centre="cc-research", lake=lakes["research"],
    vpc=network.vpc, read_prefixes=["raw/dataset=all/"], write_prefixes=["curated/research/", "models/research/"],
    instance_families=["g6e", "p4d"], max_vcpus=192, monthly_budget_usd=25000,
)
TeamEnvironment(
    teams_stack, "Serving", team_name="serving", cost_centre="cc-serving", lake=lakes["production"],
    vpc=network.vpc, read_prefixes=["models/approved/"], write_prefixes=["artifacts/serving/"],
    instance_families=["g5"], max_vcpus=32, monthly_budget_usd=4000, budget_thresholds_percent=[80, 100],
)
app.synth()
