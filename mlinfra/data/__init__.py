"""Package data of mlinfra: tables read by the pure helpers (``importlib.resources``).

- ``accelerator-instances.csv``: GPU and Trainium EC2 instance types (see :mod:`mlinfra.domain.instances`).
"""
