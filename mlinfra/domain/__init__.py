"""Pure domain helpers of mlinfra: no ``aws_cdk`` import anywhere below this package.

The CLI, the Lambda handlers and the constructs share these tables and calculations, so they live below the
constructs (import-linter contracts keep them free of CDK):

- :mod:`.instances`: GPU/Trainium EC2 instance table (accelerators, EFA, network cards, instance storage).
- :mod:`.hosting_instances`: SageMaker hosting instance families (local storage, accelerators).
- :mod:`.lustre_sizing`: FSx for Lustre sizing from a throughput target.
- :mod:`.transfer_planner`: which transfer service for a data size, link and deadline.
- :mod:`.inference_cost`: inference cost per million requests.
- :mod:`.cost`: what a synthesized app costs idle and per use (``mlinfra cost``; dated price table).
- :mod:`.rules`: the service-rules table: every AWS rule a construct relies on, with its documentation source.
"""
