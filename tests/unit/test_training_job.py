"""TrainingJobSpec: the CreateTrainingJob request and every validation (pure, no CDK)."""

from __future__ import annotations

import json

import pytest

from mlinfra.constructs.training_job import (
    CodeChannel,
    DataParallel,
    FsxLustreChannel,
    InputMode,
    ModelParallel,
    MpiDistribution,
    S3Channel,
    TorchDistributed,
    TrainingJobSpec,
)

ROLE = "arn:aws:iam::123456789012:role/train"
BASE = {"image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1", "role_arn": ROLE,
        "output_s3_uri": "s3://models/run/"}


def spec(**kw) -> TrainingJobSpec:
    return TrainingJobSpec(**{**BASE, **kw})


def test_full_request():
    s = spec(
        instance_type="ml.p4d.24xlarge", instance_count=4,
        channels=[S3Channel("train", "s3://raw/dataset=x/", InputMode.FAST_FILE, sharded=True),
                  S3Channel("val", "s3://raw/val/", InputMode.FAST_FILE)],
        volume_size_gb=500, output_kms_key_id="key-2", max_runtime_seconds=7200,
        use_spot=True, max_wait_seconds=14400, checkpoint_s3_uri="s3://artifacts/checkpoints/run/",
        subnet_ids=["subnet-1"], security_group_ids=["sg-1"], distribution=DataParallel(),
        hyperparameters={"epochs": "10"}, environment={"A": "b"},
    )
    r = s.to_request("run-1", hyperparameters={"lr": "0.1"}, tags={"team": "a"})
    assert r["TrainingJobName"] == "run-1" and r["RoleArn"] == ROLE
    assert r["AlgorithmSpecification"] == {"TrainingImage": BASE["image_uri"], "TrainingInputMode": "FastFile"}
    assert r["ResourceConfig"] == {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 4, "VolumeSizeInGB": 500}
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert r["EnableManagedSpotTraining"] is True and r["EnableNetworkIsolation"] is True
    assert r["EnableInterContainerTrafficEncryption"] is True
    assert r["CheckpointConfig"] == {"S3Uri": "s3://artifacts/checkpoints/run/", "LocalPath": "/opt/ml/checkpoints"}
    assert r["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert r["OutputDataConfig"] == {"S3OutputPath": "s3://models/run/", "KmsKeyId": "key-2"}
    assert r["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "ShardedByS3Key"
    hp = r["HyperParameters"]
    assert hp["sagemaker_distributed_dataparallel_enabled"] == "true"
    assert hp["sagemaker_instance_type"] == '"ml.p4d.24xlarge"'
    assert hp["epochs"] == "10" and hp["lr"] == "0.1"
    assert r["Tags"] == [{"Key": "team", "Value": "a"}] and r["Environment"] == {"A": "b"}


def test_request_is_accepted_by_the_sagemaker_api_shape():
    """botocore validates the request against the CreateTrainingJob model (no network call)."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob")
    fsx = spec(channels=[FsxLustreChannel("train", "fs-0123456789abcdef0", "/abcdef/raw")],
               subnet_ids=["subnet-1"], security_group_ids=["sg-1"], keep_alive_period_seconds=600,
               distribution=ModelParallel(partitions=2, microbatches=4, processes_per_host=8), instance_count=2)
    for s in (fsx, spec(use_spot=True, checkpoint_s3_uri="s3://a/c/", distribution=TorchDistributed())):
        report = ParamValidator().validate(s.to_request("job-2"), model.input_shape)
        assert not report.has_errors(), report.generate_report()


def test_fsx_channel_and_warm_pool():
    r = spec(channels=[FsxLustreChannel("train", "fs-1", "/mnt/raw")], subnet_ids=["s"], security_group_ids=["g"],
             keep_alive_period_seconds=1800).to_request("j")
    ds = r["InputDataConfig"][0]["DataSource"]["FileSystemDataSource"]
    assert ds == {"FileSystemId": "fs-1", "FileSystemType": "FSxLustre", "FileSystemAccessMode": "ro",
                  "DirectoryPath": "/mnt/raw"}
    assert r["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert r["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 1800


def test_distribution_hyperparameters():
    mpi = spec(instance_count=2, distribution=MpiDistribution(processes_per_host=8)).distribution_hyperparameters()
    assert mpi["sagemaker_mpi_enabled"] == "true" and mpi["sagemaker_mpi_num_of_processes_per_host"] == "8"
    mp = spec(instance_count=2, distribution=ModelParallel(partitions=4, microbatches=8, processes_per_host=8,
                                                           tensor_parallel_degree=2)).distribution_hyperparameters()
    assert json.loads(mp["mp_parameters"]) == {
        "partitions": 4, "microbatches": 8, "tensor_parallel_degree": 2}
    assert spec(distribution=TorchDistributed()).distribution_hyperparameters() == {
        "sagemaker_torch_distributed_enabled": "true"}
    assert spec().distribution_hyperparameters() == {}


def test_tokens_and_paths_are_not_validated_as_literals():
    s = spec(output_s3_uri="${Token[TOKEN.123]}", channels=[S3Channel("train", "${Token[TOKEN.9]}")])
    assert s.to_request("$.name")["TrainingJobName"] == "$.name"


@pytest.mark.parametrize(("kw", "match"), [
    ({"instance_type": "m1.p4d.24xlarge"}, "'m1.' looks like a typo"),
    ({"instance_type": "p4d.24xlarge"}, "must be a SageMaker type starting with 'ml.'"),
    ({"instance_count": 0}, "instance_count must be >= 1"),
    ({"volume_size_gb": 0}, "volume_size_gb must be 1 to 16384"),
    ({"max_runtime_seconds": 30 * 86400}, r"max_runtime_seconds must be 1 to 2419200 \(28 days\)"),
    ({"max_wait_seconds": 100}, "max_wait_seconds is for managed spot training"),
    ({"use_spot": True, "max_wait_seconds": 10, "checkpoint_s3_uri": "s3://a/"}, "max_wait_seconds must be >="),
    ({"use_spot": True}, "checkpoint_s3_uri is required with use_spot=True"),
    ({"use_spot": True, "checkpoint_s3_uri": "s3://a/", "keep_alive_period_seconds": 60},
     "warm pools are not available with managed spot"),
    ({"keep_alive_period_seconds": 4000}, "keep_alive_period_seconds must be 0 to 3600"),
    ({"channels": [S3Channel("a", "s3://x/"), S3Channel("a", "s3://y/")]}, "channel names must be unique"),
    ({"channels": [S3Channel("bad name", "s3://x/")]}, "channel name must be"),
    ({"channels": [S3Channel("a", "https://x/")]}, "s3_uri must start with s3://"),
    ({"channels": [FsxLustreChannel("a", "fs-1", "/m/x")]}, "an FSx for Lustre channel needs the job in"),
    ({"channels": [FsxLustreChannel("a", "fs-1", "m/x")], "subnet_ids": ["s"], "security_group_ids": ["g"]},
     "directory_path must be"),
    ({"channels": [S3Channel("a", "s3://x/", InputMode.PIPE), FsxLustreChannel("b", "fs-1", "/m")],
      "subnet_ids": ["s"], "security_group_ids": ["g"]}, "Pipe mode cannot be mixed"),
    ({"subnet_ids": ["s"]}, "subnet_ids and security_group_ids go together"),
    ({"output_s3_uri": "models/"}, "output_s3_uri must start with s3://"),
    ({"instance_type": "ml.g5.48xlarge", "distribution": DataParallel()}, "DataParallel \\(SMDDP\\) needs one of"),
    ({"instance_type": "ml.p3.16xlarge", "distribution": DataParallel()}, "SMDDP"),
    ({"distribution": MpiDistribution(processes_per_host=1)}, "MPI with one process on one instance"),
    ({"distribution": MpiDistribution(processes_per_host=0)}, "processes_per_host must be >= 1"),
    ({"distribution": ModelParallel(partitions=3, microbatches=4, processes_per_host=8)},
     r"partitions x tensor_parallel_degree \(3 x 1 = 3\) must divide processes_per_host x instance_count"),
    ({"distribution": ModelParallel(partitions=0, microbatches=4, processes_per_host=8)}, "must be >= 1"),
    # rule sagemaker.no-volume-kms-with-instance-storage: the default ml.p4d.24xlarge has local NVMe
    ({"volume_kms_key_id": "key-1"},
     r"volume_kms_key_id must not be set for ml.p4d.24xlarge, which has local NVMe instance storage .*got: 'key-1' "
     r"\(AWS rule sagemaker.no-volume-kms-with-instance-storage"),
    ({"instance_type": "ml.g5.2xlarge", "volume_kms_key_id": "key-1"}, "ml.g5.2xlarge, which has local NVMe"),
    ({"instance_type": "ml.m5d.xlarge", "volume_kms_key_id": "key-1"}, "ml.m5d.xlarge, which has local NVMe"),
    ({"code": CodeChannel("s3://code/src/", "train.py")}, "code.s3_uri must be an s3:// URI of the source archive"),
    ({"code": CodeChannel("s3://code/sourcedir.tar.gz", "src/train.py")}, "code.entry_point must be a file name"),
    ({"code": CodeChannel("s3://code/sourcedir.tar.gz", "train.py"), "channels": [S3Channel("code", "s3://x/")]},
     "the name 'code' is taken by code"),
])
def test_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        spec(**kw)


def test_request_errors():
    with pytest.raises(ValueError, match="job_name must be 1-63 letters"):
        spec().to_request("bad_name!")
    with pytest.raises(ValueError, match="hyperparameters values must be strings"):
        spec(hyperparameters={"epochs": 10}).to_request("ok")


def test_volume_key_is_fine_on_ebs_only_types():
    r = spec(instance_type="ml.m5.xlarge", volume_kms_key_id="key-1").to_request("run")
    assert r["ResourceConfig"]["VolumeKmsKeyId"] == "key-1"
    assert spec(instance_type="ml.p4d.24xlarge", output_kms_key_id="key-2").output_kms_key_id == "key-2"


def test_code_channel_gives_script_mode_its_code_under_network_isolation():
    s = spec(code=CodeChannel("s3://artifacts/code/run-1/sourcedir.tar.gz", "train.py"))
    assert s.network_isolation is True
    r = s.to_request("run-1")
    (code,) = [c for c in r["InputDataConfig"] if c["ChannelName"] == "code"]
    assert code["DataSource"]["S3DataSource"]["S3Uri"] == "s3://artifacts/code/run-1/sourcedir.tar.gz"
    assert code["InputMode"] == "File"
    hp = r["HyperParameters"]
    assert hp["sagemaker_program"] == '"train.py"'
    assert hp["sagemaker_submit_directory"] == '"/opt/ml/input/data/code/sourcedir.tar.gz"'
    import botocore.session

    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob")
    validate_parameters(r, model.input_shape)
