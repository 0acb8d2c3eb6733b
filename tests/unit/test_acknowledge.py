"""The one acknowledgment helper: cdk-nag and cfn-guard through CDK's Validations (reasons in the report), checkov as
resource metadata ``checkov.skip`` with the reason as comment."""

from __future__ import annotations

import pytest
from aws_cdk import aws_sqs as sqs

from mlinfra.constructs.common import CFN_GUARD_PLUGIN, acknowledge
from tests.helpers import new_stack


def test_checkov_acknowledgment_is_resource_metadata_with_the_reason():
    stack = new_stack()
    queue = sqs.Queue(stack, "Q")
    acknowledge(queue, "checkov::CKV_AWS_27", "This queue holds nothing sensitive: test fixture only")
    acknowledge(queue, "checkov::CKV_AWS_27", "A second reason replaces the first one, never duplicates")
    meta = queue.node.default_child.get_metadata("checkov")
    assert meta == {"skip": [{"id": "CKV_AWS_27", "comment": "A second reason replaces the first one, never duplicates"}]}


def test_cfn_guard_acknowledgment_uses_the_plugins_namespace():
    stack = new_stack()
    queue = sqs.Queue(stack, "Q")
    acknowledge(queue, "cfn-guard::sqs_dlq_check", "This queue is itself a dead-letter queue of a test")
    data = [m.data for m in queue.node.metadata if m.type == "aws:cdk:acknowledged-rules"]
    assert data == [{f"{CFN_GUARD_PLUGIN}::sqs_dlq_check": "This queue is itself a dead-letter queue of a test"}]


@pytest.mark.parametrize("rule,reason,message", [
    ("checkov::CKV_AWS_27", "short", "a specific reason is required"),
    ("checkov::AWS_27", "a long enough reason for the check", "a checkov id is CKV_<FRAMEWORK>_<n>"),
    ("cfn-guard::", "a long enough reason for the check", "rule must be '<scanner>::<rule>'"),
])
def test_bad_acknowledgments_are_refused(rule, reason, message):
    stack = new_stack()
    with pytest.raises(ValueError, match=message):
        acknowledge(sqs.Queue(stack, "Q"), rule, reason)


def test_checkov_acknowledgment_needs_a_resource():
    from constructs import Construct

    stack = new_stack()
    with pytest.raises(ValueError, match="holds no CloudFormation resource"):
        acknowledge(Construct(stack, "Empty"), "checkov::CKV_AWS_27", "a long enough reason for the check")
