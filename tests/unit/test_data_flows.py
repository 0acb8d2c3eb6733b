"""Data-flow proofs over the synthesized policies, key policies and bucket policies of the whole prod app
(issue 12): for each flow the platform promises, the principal is allowed. The evaluator is tests/iam_eval.py
(why not a library: see its docstring). A missing grant fails the test."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from tests.iam_eval import App


@pytest.fixture(scope="module")
def prod(prod_config):
    from mlinfra.app import create_app

    _, platform = create_app(config=prod_config, nag=False)
    stacks = [platform.network, platform.data_lake, *platform.extra.values()]
    app = App({s.stack_name: Template.from_stack(s).to_json() for s in stacks}, prod_config.account, prod_config.region)
    return app, prod_config


def _one(app: App, stack_suffix: str, type_: str, prefix: str) -> str:
    found = [f"<{s}:{logical}>" for s, logical, _ in app.resources(type_) if s.endswith(stack_suffix) and logical.startswith(prefix)]
    assert len(found) == 1, (stack_suffix, prefix, found)
    return found[0]


def _arn(ref: str) -> str:
    return ref[:-1] + ".Arn>"


@pytest.fixture(scope="module")
def names(prod):
    app, cfg = prod
    return {
        "job": _one(app, "-pipeline", "AWS::IAM::Role", "RetrainPipelineJobRole"),
        "model": _one(app, "-serving", "AWS::IAM::Role", "RealtimeEndpointExecutionRole"),
        "evaluation": _one(app, "-pipeline", "AWS::IAM::Role", "RetrainPipelineEvaluationFunctionRole"),
        "machine": _one(app, "-pipeline", "AWS::IAM::Role", "RetrainPipelineStateMachineRole"),
        "trigger": _one(app, "-pipeline", "AWS::IAM::Role", "RetrainPipelineTriggerFunctionRole"),
        "pipeline_key": _arn(_one(app, "-pipeline", "AWS::KMS::Key", "RetrainPipelineKey")),
        "lake_key": _arn(_one(app, "-data-lake", "AWS::KMS::Key", "DataLakeKey")),
        "models": _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeModelsBucket"),
        "artifacts": _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeArtifactsBucket"),
        "dataset": cfg.pipeline.datasets[0],
    }


def _object(bucket: str, key: str) -> str:
    return f"{_arn(bucket)}/{key}"


def test_training_writes_the_model_with_the_pipeline_key(prod, names):
    app, _ = prod
    artifact = _object(names["models"], f"{names['dataset']}/run-1/output/model.tar.gz")
    assert app.bucket_allows(names["job"], names["models"], "s3:PutObject", artifact)
    assert app.key_allows(names["job"], names["pipeline_key"], "kms:GenerateDataKey")


def test_the_endpoint_role_reads_and_decrypts_the_rolled_out_model_and_pulls_its_image(prod, names):
    app, cfg = prod
    artifact = _object(names["models"], f"{names['dataset']}/run-1/output/model.tar.gz")
    assert app.bucket_allows(names["model"], names["models"], "s3:GetObject", artifact)
    assert app.key_allows(names["model"], names["pipeline_key"], "kms:Decrypt")  # issue 12 item 2a
    image = cfg.pipeline.inference_image or cfg.serving.image_uri
    registry, repo = image.split("/", 1)
    account, region = registry.split(".")[0], registry.split(".")[3]
    repository = f"arn:aws:ecr:{region}:{account}:repository/{repo.split(':')[0].split('@')[0]}"
    assert app.identity_allows(names["model"], "ecr:BatchGetImage", repository)  # issue 12 item 2c
    assert app.identity_allows(names["model"], "ecr:GetAuthorizationToken", "*")


def test_the_endpoint_role_reads_the_initial_model(prod, names):
    app, cfg = prod
    initial = _object(names["models"], cfg.serving.model_data_key)
    assert app.bucket_allows(names["model"], names["models"], "s3:GetObject", initial)
    assert app.key_allows(names["model"], names["lake_key"], "kms:Decrypt")


def test_the_evaluation_reads_its_report(prod, names):
    app, _ = prod
    report = _object(names["artifacts"], f"evaluation/{names['dataset']}/v1/run-1/evaluation.json")
    assert app.bucket_allows(names["evaluation"], names["artifacts"], "s3:GetObject", report)
    assert app.key_allows(names["evaluation"], names["pipeline_key"], "kms:Decrypt")  # written by the evaluation job
    assert app.key_allows(names["evaluation"], names["lake_key"], "kms:Decrypt")  # or by training (bucket key)


def test_capture_writes_with_its_key(prod, names):
    app, _ = prod
    captured = _object(names["artifacts"], "data-capture/realtime/AllTraffic/2026/11/30/12/x.jsonl")
    assert app.bucket_allows(names["model"], names["artifacts"], "s3:PutObject", captured)
    assert app.key_allows(names["model"], names["lake_key"], "kms:GenerateDataKey")


def test_the_state_machine_passes_the_model_role_and_records_the_served_model(prod, names):
    app, cfg = prod
    assert app.identity_allows(names["machine"], "iam:PassRole", _arn(names["model"]))
    prefix = f"/{cfg.prefix}/{cfg.env_name}/serving/realtime"
    for param in ("image", "model-data-url"):
        arn = f"arn:aws:ssm:{cfg.region}:{cfg.account}:parameter{prefix}/{param}"
        assert app.identity_allows(names["machine"], "ssm:PutParameter", arn), arn


def test_a_missing_grant_is_caught(prod, names):
    """The evaluator says no where no grant exists (what items 2a/2c looked like before the fix)."""
    app, _ = prod
    artifact = _object(names["models"], f"{names['dataset']}/run-1/output/model.tar.gz")
    async_key = _arn(_one(app, "-serving", "AWS::KMS::Key", "AsyncEndpointKey"))
    assert not app.key_allows(names["model"], async_key, "kms:Decrypt")  # another endpoint's key
    assert not app.bucket_allows(names["trigger"], names["models"], "s3:GetObject", artifact)
    assert not app.identity_allows(names["model"], "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:999999999999:repository/other")


# --- batch transform (issue 12 item 11): newest approved model, one job per ready batch -----------------------

@pytest.fixture(scope="module")
def batch(prod, names):
    app, cfg = prod
    return {
        "machine": _one(app, "-serving", "AWS::IAM::Role", "BatchTransformStateMachineRole"),
        "key": _arn(_one(app, "-serving", "AWS::KMS::Key", "BatchTransformKey")),
        "curated": _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeCuratedBucket"),
        "group": f"arn:aws:sagemaker:{cfg.region}:{cfg.account}:model-package/{cfg.prefix}-{cfg.env_name}-models",
        "prefix": f"{cfg.prefix}-{cfg.env_name}-bt",
        "cfg": cfg,
    }


def test_the_batch_workflow_finds_and_uses_the_newest_approved_package(prod, names, batch):
    app, _ = prod
    cfg = batch["cfg"]
    assert app.identity_allows(batch["machine"], "sagemaker:ListModelPackages", "*")
    assert app.identity_allows(batch["machine"], "sagemaker:DescribeModelPackage", f"{batch['group']}/3")
    model = f"arn:aws:sagemaker:{cfg.region}:{cfg.account}:model/{batch['prefix']}-0123abcd"
    job = f"arn:aws:sagemaker:{cfg.region}:{cfg.account}:transform-job/{batch['prefix']}-0123abcd"
    for action, resource in (("sagemaker:CreateModel", model), ("sagemaker:DeleteModel", model),
                             ("sagemaker:CreateTransformJob", job), ("sagemaker:DescribeTransformJob", job)):
        assert app.identity_allows(batch["machine"], action, resource), action
    assert app.identity_allows(batch["machine"], "iam:PassRole", _arn(names["model"]))
    # Another group's packages and another construct's jobs stay out of reach.
    other = f"arn:aws:sagemaker:{cfg.region}:{cfg.account}:model-package/other-models/1"
    assert not app.identity_allows(batch["machine"], "sagemaker:DescribeModelPackage", other)
    assert not app.identity_allows(batch["machine"], "sagemaker:CreateTransformJob", job.replace(batch["prefix"], "x"))


def test_the_batch_job_reads_the_batch_and_writes_results_with_its_key(prod, names, batch):
    app, _ = prod
    data = _object(batch["curated"], "batch-inference/input/day-2026-11-30/part-0001.csv")
    assert app.bucket_allows(names["model"], batch["curated"], "s3:GetObject", data)
    assert app.key_allows(names["model"], names["lake_key"], "kms:Decrypt")
    result = _object(names["artifacts"], "batch-inference/output/day-2026-11-30/model-version=3/job/part-0001.csv.out")
    assert app.bucket_allows(names["model"], names["artifacts"], "s3:PutObject", result)
    assert app.key_allows(names["model"], batch["key"], "kms:GenerateDataKey")  # TransformOutput.KmsKeyId
    # The job runs the package's model: its artifact (pipeline key) and image, as the endpoint does (item 2).
    artifact = _object(names["models"], f"{names['dataset']}/run-1/output/model.tar.gz")
    assert app.bucket_allows(names["model"], names["models"], "s3:GetObject", artifact)
    assert app.key_allows(names["model"], names["pipeline_key"], "kms:Decrypt")
    assert not app.bucket_allows(names["model"], batch["curated"], "s3:GetObject", _object(batch["curated"], "dataset=x/y.csv"))


def test_a_datasync_run_is_staged_landed_and_reported_issue_12_item_12(prod, names):
    """The reference DataSync task (dataset images): DataSync writes its staging prefix; the completion handler reads
    the staged versions, the task report and the execution, writes the dataset's versions with the lake key and
    notifies the alarm topic, and nothing else."""
    app, _ = prod
    task = "DataSyncpartnerimagesnightly"
    handler = _one(app, "-ingestion", "AWS::IAM::Role", f"{task}PromotionHandlerRole")
    destination = _one(app, "-ingestion", "AWS::IAM::Role", f"{task}DestinationRole")
    landing = _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeLandingBucket")
    staged = _object(landing, "_datasync/images/DataSync-partner-images-nightly/staging/2026/part-0.csv")
    landed = _object(landing, "images/20261130T020000Z-exec-0123456789abcdef0/2026/part-0.csv")
    report = _object(names["artifacts"], "datasync-reports/DataSync-partner-images-nightly/Detailed-Reports/task-0/exec-0/x.json")
    assert app.bucket_allows(destination, landing, "s3:PutObject", staged)
    assert not app.bucket_allows(destination, landing, "s3:PutObject", landed)  # DataSync never writes a version itself
    for action in ("s3:GetObject", "s3:GetObjectVersion"):
        assert app.bucket_allows(handler, landing, action, staged), action
    for action in ("s3:PutObject", "s3:PutObjectTagging", "s3:GetObject"):
        assert app.bucket_allows(handler, landing, action, landed), action
    assert app.bucket_allows(handler, names["artifacts"], "s3:GetObject", report)
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert app.key_allows(handler, names["lake_key"], action), action
    task_ref = _one(app, "-ingestion", "AWS::DataSync::Task", f"{task}Task")
    assert app.identity_allows(handler, "datasync:DescribeTaskExecution", f"{task_ref}/execution/exec-0123456789abcdef0")
    topic = _one(app, "-ingestion", "AWS::SNS::Topic", "AlarmTopic")
    assert app.identity_allows(handler, "sns:Publish", topic)
    # ... and nothing beyond: no delete, no other dataset, no raw zone, no other task's executions.
    assert not app.bucket_allows(handler, landing, "s3:DeleteObject", staged)
    assert not app.bucket_allows(handler, landing, "s3:PutObject", _object(landing, "tabular/v1/a.csv"))
    raw = _one(app, "-data-lake", "AWS::S3::Bucket", "DataLakeRawBucket")
    assert not app.bucket_allows(handler, raw, "s3:PutObject", _object(raw, "dataset=images/version=v1/a.csv"))
    assert not app.identity_allows(handler, "datasync:DescribeTaskExecution",
                                   "arn:aws:datasync:us-east-1:123456789012:task/task-0fffffffffffffff0/execution/exec-1")


def _state_machine_definition(app: App, stack_suffix: str, prefix: str) -> dict:
    import json

    (found,) = [(s, r) for s, logical, r in app.resources("AWS::StepFunctions::StateMachine")
                if s.endswith(stack_suffix) and logical.startswith(prefix)]
    stack, resource = found
    return json.loads(app.render(stack, resource["DefinitionString"]))


def test_the_batch_results_are_readable_by_lake_readers(prod, names):
    """Issue 12 item 11 review: the results were encrypted with the batch construct's own key, which no lake reader
    holds. Now with the lake key: a principal that reads the artifacts zone (the evaluation function) decrypts them."""
    app, _ = prod
    states = _state_machine_definition(app, "-serving", "BatchTransformStateMachine")["States"]
    key = states["CreateTransformJob"]["Parameters"]["TransformOutput"]["KmsKeyId"]
    assert key == names["lake_key"]
    assert app.key_allows(names["evaluation"], key, "kms:Decrypt")
    assert app.key_allows(names["model"], key, "kms:GenerateDataKey")  # the job writes with it


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
