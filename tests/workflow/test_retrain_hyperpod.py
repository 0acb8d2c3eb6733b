"""The retrain pipeline trains on SageMaker HyperPod (issue 18): the synthesized retrain state machine runs in
moto's interpreter with the real handlers, and the REAL Slurm job bridge (a fake Slurm, boto3 against moto) takes
the job, so the run trains, evaluates, registers and deploys exactly as with a SageMaker training job."""

from __future__ import annotations

import json
import sys
import threading
import time

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.endpoint_target import EndpointTarget
from mlinfra.constructs.hyperpod import HyperPodCluster, HyperPodInstanceGroup, HyperPodLifecycle, SlurmNodeType
from mlinfra.constructs.retrain_pipeline import HyperPodTraining, JobWait, RetrainPipeline, TrainingProps
from mlinfra.userdata.hyperpod import scripts_dir
from tests.helpers import new_stack
from tests.workflow.test_hyperpod_bridge import FakeSlurm, MotoAws
# env: the retrain workflow tests' emulator fixture, over this module's template
from tests.workflow.test_retrain_workflow import DATASET, IMAGE, SERVE, env  # noqa: F401

sys.path.insert(0, str(scripts_dir()))
import slurm_bridge  # noqa: E402


@pytest.fixture(scope="module")
def template() -> dict:
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a"],
                                      private_subnet_ids=["subnet-0123456789abcdef0"])
    cluster = HyperPodCluster(
        stack, "HyperPod", vpc=vpc, subnet=vpc.private_subnets[0], cluster_name="ml-hyperpod",
        instance_groups=[HyperPodInstanceGroup("controller", "ml.t3.medium", SlurmNodeType.CONTROLLER),
                         HyperPodInstanceGroup("gpu", "ml.p5.48xlarge", instance_count=2, partition="gpu")],
        lifecycle=HyperPodLifecycle.bundled(lake.bucket("artifacts")))
    model_role = iam.Role(stack, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    target = EndpointTarget(
        endpoint_name="prod-endpoint", endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/prod-endpoint",
        variant_name="AllTraffic", instance_type="ml.m5.large", initial_instance_count=1, model_execution_role=model_role,
        deployment_config={"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE"}}})
    RetrainPipeline(stack, "Hyper", lake=lake, training=TrainingProps(image_uri=IMAGE), metric_name="accuracy",
                    datasets=[DATASET], threshold=0.8, poll_interval=cdk.Duration.seconds(1), deploy_target=target,
                    inference_image_uri=SERVE, job_wait=JobWait.POLL, state_machine_name="hyper",
                    hyperpod=HyperPodTraining(cluster=cluster, partition="gpu", nodes=2, image=IMAGE,
                                              command=["torchrun", "train.py"]))
    return Template.from_stack(stack).to_json()


def _bridge_until(env, stop: threading.Event, slurm: FakeSlurm, workdir) -> None:
    queue = next(k for k in env.resolver.logical_ids("AWS::SQS::Queue") if k.startswith("HyperPodJobQueue"))
    bridge = slurm_bridge.Bridge(aws=MotoAws(env.resolver.ensure(queue)["Ref"]), slurm=slurm,
                                 state_file=workdir / "jobs.json", shared_path="/fsx")
    while not stop.is_set():
        bridge.step(wait_seconds=0)
        time.sleep(0.1)


def _run_with_bridge(env, name: str, slurm: FakeSlurm, tmp_path) -> dict:
    stop = threading.Event()
    thread = threading.Thread(target=_bridge_until, args=(env, stop, slurm, tmp_path), daemon=True)
    thread.start()
    try:
        return env.run("hyper", name, timeout=90)
    finally:
        stop.set()
        thread.join(5)


def test_retrain_trains_on_hyperpod_then_registers_and_deploys(env, tmp_path):
    env.report("run-1", 0.93)
    slurm = FakeSlurm(["PENDING", "RUNNING", "COMPLETED"])
    result = _run_with_bridge(env, "run-1", slurm, tmp_path)
    assert result["status"] == "SUCCEEDED", result
    states = result["states"]
    assert "TrainOnHyperPod" in states and "StartTrainingJob" not in states
    for state in ("HyperPodTrainingResult", "ReadEvaluationReport", "RegisterModelPackage", "ApproveModelPackage"):
        assert state in states, f"{state} not in {states}"
    (script,) = slurm.scripts
    plan = json.loads(result["output"])["plan"]
    assert f"export CHECKPOINT_URI={plan['uris']['checkpoints']}" in script
    assert f"export OUTPUT_URI={plan['uris']['output']}" in script and "#SBATCH --nodes=2" in script
    assert "#SBATCH --job-name=run-1-train-r0" in script
    output = json.loads(result["output"])
    assert output["training"]["result"]["model_data"] == plan["uris"]["output"] + "model.tar.gz"
    assert output["training"]["describe"]["TrainingJobArn"].endswith("/slurm-job/101")
    (package,) = env.packages("Hyper")
    assert package["ModelApprovalStatus"] == "Approved"


def test_a_failed_hyperpod_job_fails_the_run_and_notifies(env, tmp_path):
    env.report("run-2", 0.93)
    result = _run_with_bridge(env, "run-2", FakeSlurm(["NODE_FAIL"]), tmp_path)
    assert result["status"] == "FAILED", result
    assert "TrainingFailed" in result["states"] and "RegisterModelPackage" not in result["states"]
    notes = [m for m in env.messages() if m.get("message", {}).get("status") == "Failed"]
    assert notes and "Slurm.NODE_FAIL" in json.dumps(notes[0])
