"""The embedded local AWS: deploy every stack of an mlinfra app into a moto server with the CDK CLI.

``python -m mlinfra.local_aws deploy`` (what ``make deploy-local`` and ``mlinfra deploy-local`` run):

1. synthesizes the app's ``local`` environment with the CDK CLI;
2. rewrites each template for the emulator (:mod:`mlinfra.local_aws.emulator`): resource types moto cannot
   create are removed and references to them replaced by placeholders, so no stack hangs on them;
3. starts a moto server on a free localhost port, bootstraps it and runs ``cdk deploy --method=direct`` on every
   stack;
4. prints, per stack, every resource as *created* (present in the emulator) or *skipped* (with the reason),
   and the stack outputs; never reports a skipped resource as created;
5. runs the smoke checks of :mod:`mlinfra.local_aws.smoke` with boto3 against the emulator.
"""
