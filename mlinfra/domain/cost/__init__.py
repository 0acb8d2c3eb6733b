"""What the platform costs: a pure estimator over a synthesized CDK cloud assembly (no aws_cdk import).

- :mod:`.prices`: the shipped, dated price table (``mlinfra/data/prices.csv``).
- :mod:`.assembly`: reads ``cdk.out`` and its nested stage assemblies.
- :mod:`.pricers`: one pricer per priced resource type (idle and per use).
- :mod:`.estimate`: the report (per stack, per environment, unknowns with reasons) and ``diff``.
- :mod:`.refresh`: current prices from the AWS Price List API.
- :mod:`.cli`: ``mlinfra cost``.
"""

from mlinfra.domain.cost.assembly import AssemblyStack, read_assembly
from mlinfra.domain.cost.estimate import LineItem, Report, diff, estimate, price_template, resource_types
from mlinfra.domain.cost.prices import HOURS_PER_MONTH, MissingPrice, Price, PriceTable

__all__ = ["AssemblyStack", "read_assembly", "LineItem", "Report", "diff", "estimate", "price_template",
           "resource_types", "HOURS_PER_MONTH", "MissingPrice", "Price", "PriceTable"]
