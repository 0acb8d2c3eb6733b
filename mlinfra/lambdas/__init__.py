"""Glue handlers, one folder each; a folder is its function's whole asset (boto3 and Powertools come from the
runtime and AWS's Powertools layer).

No handler imports the X-Ray SDK (Powertools' ``Tracer``): the functions run with Lambda's active tracing, which
records each invocation without it, and their import stays within 1.3x of a bare ``import boto3`` (decision and
figures in docs/performance.md, "Handler cold start"; tests/handlers/test_cold_start.py checks it).
"""
