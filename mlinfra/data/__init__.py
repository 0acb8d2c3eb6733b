"""Package data of mlinfra: tables read by the pure helpers (``importlib.resources``).

- ``accelerator-instances.csv``: GPU and Trainium EC2 instance types (see :mod:`mlinfra.domain.instances`).
- ``prices.csv``: dated on-demand list prices, per Region, with their sources (see :mod:`mlinfra.domain.cost`).
- ``cost-resource-types.csv``: how ``mlinfra cost`` treats each CloudFormation type (priced, usage, free).
"""
