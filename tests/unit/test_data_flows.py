"""Data-flow proofs over the synthesized policies, key policies and bucket policies of the whole prod app
(issue 12): for each flow the platform promises, the principal is allowed, conditions included (the evaluator is
``mlinfra.domain.iam_eval``; why not a library: see its docstring). A missing grant fails the test."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from mlinfra.domain.iam_eval import Assembly, Request, Role


@pytest.fixture(scope="module")
def prod(prod_config):
    from mlinfra.app import create_app

    _, platform = create_app(config=prod_config, nag=False)
    stacks = [platform.network, platform.data_lake, *platform.extra.values()]
    app = Assembly({s.stack_name: Template.from_stack(s).to_json() for s in stacks}, account=prod_config.account,
                   region=prod_config.region)
    return app, prod_config


def _one(app: Assembly, stack_suffix: str, type_: str, prefix: str) -> tuple[str, str]:
    """(template, logical id) of the one resource of ``type_`` whose logical id starts with ``prefix``."""
    found = [(t, logical) for t, logical, _ in app.resources(type_) if t.endswith(stack_suffix) and logical.startswith(prefix)]
    assert len(found) == 1, (stack_suffix, prefix, found)
    return found[0]


@pytest.fixture(scope="module")
def names(prod):
    app, cfg = prod
    roles = {"job": ("-pipeline", "RetrainPipelineJobRole"), "model": ("-serving", "RealtimeEndpointExecutionRole"),
             "evaluation": ("-pipeline", "RetrainPipelineEvaluationFunctionRole"),
             "machine": ("-pipeline", "RetrainPipelineStateMachineRole"),
             "trigger": ("-pipeline", "RetrainPipelineTriggerFunctionRole")}
    return {
        **{name: app.role(*_one(app, suffix, "AWS::IAM::Role", prefix)) for name, (suffix, prefix) in roles.items()},
        "pipeline_key": _one(app, "-pipeline", "AWS::KMS::Key", "RetrainPipelineKey"),
        "lake_key": _one(app, "-data-lake", "AWS::KMS::Key", "DataLakeKey"),
        "models": _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeModelsBucket"),
        "artifacts": _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeArtifactsBucket"),
        "dataset": cfg.pipeline.datasets[0],
    }


def _object(app: Assembly, bucket: tuple[str, str], key: str) -> str:
    return f"{app.arn(*bucket)}/{key}"


def bucket_allows(app: Assembly, role: Role, bucket: tuple[str, str], action: str, key: str) -> bool:
    """``role`` may do ``action`` on object ``key`` of ``bucket`` over TLS (identity OR bucket policy, no Deny)."""
    req = Request(action, _object(app, bucket, key), {"aws:SecureTransport": True})
    return role.can(req, resource_policy=app.bucket_policy(*bucket))


def key_allows(app: Assembly, role: Role, key: tuple[str, str], action: str, via: str = "s3") -> bool:
    """``role`` may use KMS ``key`` for ``action`` through service ``via`` (the key policy must allow it)."""
    region, account = app.resolver.region, app.resolver.account
    req = Request(action, app.arn(*key), {"kms:ViaService": f"{via}.{region}.amazonaws.com", "kms:CallerAccount": account})
    return role.can(req, key_policy=app.key_policy(*key))


def test_training_writes_the_model_with_the_pipeline_key(prod, names):
    app, _ = prod
    artifact = f"{names['dataset']}/run-1/output/model.tar.gz"
    assert bucket_allows(app, names["job"], names["models"], "s3:PutObject", artifact)
    assert key_allows(app, names["job"], names["pipeline_key"], "kms:GenerateDataKey")


def test_the_endpoint_role_reads_and_decrypts_the_rolled_out_model_and_pulls_its_image(prod, names):
    app, cfg = prod
    artifact = f"{names['dataset']}/run-1/output/model.tar.gz"
    assert bucket_allows(app, names["model"], names["models"], "s3:GetObject", artifact)
    assert key_allows(app, names["model"], names["pipeline_key"], "kms:Decrypt")  # issue 12 item 2a
    image = cfg.pipeline.inference_image or cfg.serving.image_uri
    registry, repo = image.split("/", 1)
    account, region = registry.split(".")[0], registry.split(".")[3]
    repository = f"arn:aws:ecr:{region}:{account}:repository/{repo.split(':')[0].split('@')[0]}"
    assert names["model"].can(Request("ecr:BatchGetImage", repository))  # issue 12 item 2c
    assert names["model"].can(Request("ecr:GetAuthorizationToken", "*"))


def test_the_endpoint_role_reads_the_initial_model(prod, names):
    app, cfg = prod
    assert bucket_allows(app, names["model"], names["models"], "s3:GetObject", cfg.serving.model_data_key)
    assert key_allows(app, names["model"], names["lake_key"], "kms:Decrypt")


def test_the_evaluation_reads_its_report(prod, names):
    app, _ = prod
    report = f"evaluation/{names['dataset']}/v1/run-1/evaluation.json"
    assert bucket_allows(app, names["evaluation"], names["artifacts"], "s3:GetObject", report)
    assert key_allows(app, names["evaluation"], names["pipeline_key"], "kms:Decrypt")  # written by the evaluation job
    assert key_allows(app, names["evaluation"], names["lake_key"], "kms:Decrypt")  # or by training (bucket key)


def test_capture_writes_with_its_key(prod, names):
    app, _ = prod
    captured = "data-capture/realtime/AllTraffic/2026/11/30/12/x.jsonl"
    assert bucket_allows(app, names["model"], names["artifacts"], "s3:PutObject", captured)
    assert key_allows(app, names["model"], names["lake_key"], "kms:GenerateDataKey")


def test_the_state_machine_passes_the_model_role_and_records_the_served_model(prod, names):
    _, cfg = prod
    assert names["machine"].can(Request("iam:PassRole", names["model"].arn, {"iam:PassedToService": "sagemaker.amazonaws.com"}))
    prefix = f"/{cfg.prefix}/{cfg.env_name}/serving/realtime"
    for param in ("image", "model-data-url"):
        arn = f"arn:aws:ssm:{cfg.region}:{cfg.account}:parameter{prefix}/{param}"
        assert names["machine"].can(Request("ssm:PutParameter", arn)), arn


def test_a_missing_grant_is_caught(prod, names):
    """The evaluator says no where no grant exists (what items 2a/2c looked like before the fix)."""
    app, _ = prod
    artifact = f"{names['dataset']}/run-1/output/model.tar.gz"
    async_key = _one(app, "-serving", "AWS::KMS::Key", "AsyncEndpointKey")
    assert not key_allows(app, names["model"], async_key, "kms:Decrypt")  # another endpoint's key
    assert not bucket_allows(app, names["trigger"], names["models"], "s3:GetObject", artifact)
    assert not names["model"].can(Request("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:999999999999:repository/other"))


def test_a_key_policy_decides_for_its_key():
    """Same-account KMS: a key policy that names only another role refuses even where the identity policy allows;
    one that delegates to the account lets the identity policy decide (AWS KMS default key policy)."""
    role = Role(arn="arn:aws:iam::111111111111:role/r", trust=[], boundary=None,
                identity=[{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "k"}])
    other = [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:role/other"}, "Action": "kms:*", "Resource": "*"}]
    root = [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}]
    assert not role.can(Request("kms:Decrypt", "k"), key_policy=other)
    assert role.can(Request("kms:Decrypt", "k"), key_policy=root)
    assert not Role(role.arn, [], [], None).can(Request("kms:Decrypt", "k"), key_policy=root)  # delegation alone is not a grant
    named = [{"Effect": "Allow", "Principal": {"AWS": role.arn}, "Action": "kms:Decrypt", "Resource": "*"}]
    assert Role(role.arn, [], [], None).can(Request("kms:Decrypt", "k"), key_policy=named)
