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


def _ref(app: Assembly, resource: tuple[str, str]) -> str:
    """What ``Ref`` of ``resource`` resolves to (a topic's or a DataSync task's ARN)."""
    return app.resolver.resolve({"Ref": resource[1]}, resource[0])


# --- batch transform (issue 12 item 11): newest approved model, one job per ready batch -----------------------

@pytest.fixture(scope="module")
def batch(prod, names):
    app, cfg = prod
    return {
        "machine": app.role(*_one(app, "-serving", "AWS::IAM::Role", "BatchTransformStateMachineRole")),
        "key": _one(app, "-serving", "AWS::KMS::Key", "BatchTransformKey"),
        "curated": _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeCuratedBucket"),
        "group": f"arn:aws:sagemaker:{cfg.region}:{cfg.account}:model-package/{cfg.prefix}-{cfg.env_name}-models",
        "prefix": f"{cfg.prefix}-{cfg.env_name}-bt",
        "cfg": cfg,
    }


def test_the_batch_workflow_finds_and_uses_the_newest_approved_package(prod, names, batch):
    cfg, machine = batch["cfg"], batch["machine"]
    assert machine.can(Request("sagemaker:ListModelPackages", "*"))
    assert machine.can(Request("sagemaker:DescribeModelPackage", f"{batch['group']}/3"))
    model = f"arn:aws:sagemaker:{cfg.region}:{cfg.account}:model/{batch['prefix']}-0123abcd"
    job = f"arn:aws:sagemaker:{cfg.region}:{cfg.account}:transform-job/{batch['prefix']}-0123abcd"
    for action, resource in (("sagemaker:CreateModel", model), ("sagemaker:DeleteModel", model),
                             ("sagemaker:CreateTransformJob", job), ("sagemaker:DescribeTransformJob", job)):
        assert machine.can(Request(action, resource)), action
    assert machine.can(Request("iam:PassRole", names["model"].arn, {"iam:PassedToService": "sagemaker.amazonaws.com"}))
    # Another group's packages and another construct's jobs stay out of reach.
    other = f"arn:aws:sagemaker:{cfg.region}:{cfg.account}:model-package/other-models/1"
    assert not machine.can(Request("sagemaker:DescribeModelPackage", other))
    assert not machine.can(Request("sagemaker:CreateTransformJob", job.replace(batch["prefix"], "x")))


def test_the_batch_job_reads_the_batch_and_writes_results_with_the_lake_key(prod, names, batch):
    app, _ = prod
    model = names["model"]
    assert bucket_allows(app, model, batch["curated"], "s3:GetObject", "batch-inference/input/day-2026-11-30/part-0001.csv")
    assert key_allows(app, model, names["lake_key"], "kms:Decrypt")
    result = "batch-inference/output/day-2026-11-30/model-version=3/job/part-0001.csv.out"
    assert bucket_allows(app, model, names["artifacts"], "s3:PutObject", result)
    assert key_allows(app, model, names["lake_key"], "kms:GenerateDataKey")  # TransformOutput.KmsKeyId (lake key)
    assert key_allows(app, model, batch["key"], "kms:GenerateDataKey")  # volumes (VolumeKmsKeyId)
    # The job runs the package's model: its artifact (pipeline key) and image, as the endpoint does (item 2).
    assert bucket_allows(app, model, names["models"], "s3:GetObject", f"{names['dataset']}/run-1/output/model.tar.gz")
    assert key_allows(app, model, names["pipeline_key"], "kms:Decrypt")
    assert not bucket_allows(app, model, batch["curated"], "s3:GetObject", "dataset=x/y.csv")


def test_a_datasync_run_is_staged_landed_and_reported_issue_12_item_12(prod, names):
    """The reference DataSync task (dataset images): DataSync writes its staging prefix; the completion handler reads
    the staged versions, the task report and the execution, writes the dataset's versions with the lake key and
    notifies the alarm topic, and nothing else."""
    app, _ = prod
    task = "DataSyncpartnerimagesnightly"
    handler = app.role(*_one(app, "-ingestion", "AWS::IAM::Role", f"{task}PromotionHandlerRole"))
    destination = app.role(*_one(app, "-ingestion", "AWS::IAM::Role", f"{task}DestinationRole"))
    landing = _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeLandingBucket")
    staged = "_datasync/images/DataSync-partner-images-nightly/staging/2026/part-0.csv"
    landed = "images/20261130T020000Z-exec-0123456789abcdef0/2026/part-0.csv"
    report = "datasync-reports/DataSync-partner-images-nightly/Detailed-Reports/task-0/exec-0/x.json"
    assert bucket_allows(app, destination, landing, "s3:PutObject", staged)
    assert not bucket_allows(app, destination, landing, "s3:PutObject", landed)  # DataSync never writes a version itself
    for action in ("s3:GetObject", "s3:GetObjectVersion"):
        assert bucket_allows(app, handler, landing, action, staged), action
    for action in ("s3:PutObject", "s3:PutObjectTagging", "s3:GetObject"):
        assert bucket_allows(app, handler, landing, action, landed), action
    assert bucket_allows(app, handler, names["artifacts"], "s3:GetObject", report)
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert key_allows(app, handler, names["lake_key"], action), action
    task_arn = _ref(app, _one(app, "-ingestion", "AWS::DataSync::Task", f"{task}Task"))
    assert handler.can(Request("datasync:DescribeTaskExecution", f"{task_arn}/execution/exec-0123456789abcdef0"))
    assert handler.can(Request("sns:Publish", _ref(app, _one(app, "-ingestion", "AWS::SNS::Topic", "AlarmTopic"))))
    # ... and nothing beyond: no delete, no other dataset, no raw zone, no other task's executions.
    assert not bucket_allows(app, handler, landing, "s3:DeleteObject", staged)
    assert not bucket_allows(app, handler, landing, "s3:PutObject", "tabular/v1/a.csv")
    raw = _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeRawBucket")
    assert not bucket_allows(app, handler, raw, "s3:PutObject", "dataset=images/version=v1/a.csv")
    assert not handler.can(Request("datasync:DescribeTaskExecution",
                                   "arn:aws:datasync:us-east-1:123456789012:task/task-0fffffffffffffff0/execution/exec-1"))


def _state_machine_definition(app: Assembly, stack_suffix: str, prefix: str) -> dict:
    import json

    template, logical = _one(app, stack_suffix, "AWS::StepFunctions::StateMachine", prefix)
    (props,) = [p for t, lid, p in app.resources("AWS::StepFunctions::StateMachine") if (t, lid) == (template, logical)]
    return json.loads(app.resolver.resolve(props["DefinitionString"], template))


def test_the_batch_results_are_readable_by_lake_readers(prod, names):
    """Issue 12 item 11 review: the results were encrypted with the batch construct's own key, which no lake reader
    holds. Now with the lake key: a principal that reads the artifacts zone (the evaluation function) decrypts them."""
    app, _ = prod
    states = _state_machine_definition(app, "-serving", "BatchTransformStateMachine")["States"]
    key = states["CreateTransformJob"]["Parameters"]["TransformOutput"]["KmsKeyId"]
    assert key == app.arn(*names["lake_key"])
    assert key_allows(app, names["evaluation"], names["lake_key"], "kms:Decrypt")
    assert key_allows(app, names["model"], names["lake_key"], "kms:GenerateDataKey")  # the job writes with it


def test_the_batch_content_types_are_those_the_pipeline_registers(prod):
    """Issue 12 item 11 review: the transform sent text/csv to models the pipeline registers for application/json."""
    app, _ = prod
    register = _state_machine_definition(app, "-pipeline", "RetrainPipelineStateMachine")["States"]["RegisterModelPackage"]
    spec = register["Parameters"]["InferenceSpecification"]
    transform = _state_machine_definition(app, "-serving", "BatchTransformStateMachine")["States"]["CreateTransformJob"]
    request = transform["Parameters"]
    assert request["TransformInput"]["ContentType"] in spec["SupportedContentTypes"]
    assert request["TransformOutput"]["Accept"] in spec["SupportedResponseMIMETypes"]
    assert request["TransformInput"]["SplitType"] == "Line"  # JSON Lines: one JSON record per line
