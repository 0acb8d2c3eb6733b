"""The GPU health check's node checks against recorded nvidia-smi / dcgmi outputs (tests/unit/data/gpu_health):
row remapping, XIDs, NVLink, fabric manager, EFA device count, DCGM level 2, persistence mode, pending page
retirement; and the cluster side: the instance profiles from the table, the metric, alarm and queue time limits.
No GPU machine was available: the outputs follow NVIDIA's documented formats (see the data folder's README)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Template

from mlinfra.constructs.training_cluster import BatchTrainingCluster
from mlinfra.domain import instances
from mlinfra.userdata import gpu_health
from tests.helpers import new_stack, only

DATA = Path(__file__).parent / "data" / "gpu_health"
P4D = {"gpus": 8, "efa": 4, "nvlink": True, "fabric_manager": True}


def _text(name: str) -> str:
    return (DATA / name).read_text()


class Node:
    """A fake node: each command answers a recorded output (or exit 127 when the tool is absent)."""

    def __init__(self, **answers: tuple[int, str]) -> None:
        self.answers = {
            "remap": (0, _text("p4d_remapped_rows_ok.csv")), "journalctl": (0, _text("kern_healthy.log")),
            "nvlink": (0, _text("p4d_nvlink_ok.txt")), "systemctl": (0, "active\n"), "-q": (0, ""),
            "dcgmi": (0, _text("dcgm_diag_r2_pass.json")), **answers}
        self.calls: list[list[str]] = []

    def __call__(self, argv, timeout):
        self.calls.append(list(argv))
        key = {"journalctl": "journalctl", "dmesg": "dmesg", "systemctl": "systemctl", "dcgmi": "dcgmi"}.get(argv[0])
        if argv[0] == "nvidia-smi":
            key = "remap" if argv[1].startswith("--query-remapped-rows") else "nvlink" if argv[1] == "nvlink" else argv[1]
        return self.answers.get(key, (127, ""))


@pytest.fixture
def smi(tmp_path, monkeypatch):
    """A fake nvidia-smi answering the --query-gpu part with a recorded output."""
    def install(csv_text: str) -> None:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        script = bindir / "nvidia-smi"
        script.write_text('#!/bin/sh\ncase "$1" in --query-gpu=*) ;; *) exit 9;; esac\ncat <<\'EOF\'\n'
                          + csv_text + "\nEOF\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin:/bin")
    install(_text("p4d_query_healthy.csv").strip())
    return install


@pytest.fixture
def efa4(tmp_path):
    sysfs = tmp_path / "infiniband"
    for i in range(4):
        (sysfs / f"rdmap{16 + i}s27").mkdir(parents=True)
    return str(sysfs)


def test_healthy_p4d_passes_every_check(smi, efa4):
    node = Node()
    code, report = gpu_health.check_node(P4D, runner=node, sysfs=efa4)
    assert (code, report["problems"]) == (gpu_health.EXIT_HEALTHY, [])
    assert report["checks"] == {"gpus": "pass", "row_remapping": "pass", "xid": "pass", "nvlink": "pass",
                                "fabric_manager": "pass", "efa": "pass", "dcgm": "pass"}
    assert ["dcgmi", "diag", "-r", "2", "-j"] in node.calls


def test_pending_row_remap_fails(smi, efa4):
    code, report = gpu_health.check_node(P4D, runner=Node(remap=(0, _text("p4d_remapped_rows_pending.csv"))),
                                         sysfs=efa4)
    assert code == 1 and report["problems"] == ["GPU 00000000:20:1C.0 has a row remapping pending (needs a GPU reset)"]


def test_critical_xids_fail_and_application_xids_do_not(smi, efa4):
    code, report = gpu_health.check_node(P4D, runner=Node(journalctl=(0, _text("kern_xid79.log"))), sysfs=efa4)
    assert code == 1 and report["problems"] == ["XID 94 on PCI:0000:20:1c (2 event(s))",
                                                "XID 79 on PCI:0000:a0:1d (1 event(s))"]
    assert gpu_health.xid_problems(_text("kern_healthy.log")) == []  # XID 13 and 31 are the application's


def test_kernel_log_falls_back_to_dmesg(smi, efa4):
    node = Node(journalctl=(1, ""), dmesg=(0, _text("kern_xid79.log")))
    assert gpu_health.check_node(P4D, runner=node, sysfs=efa4)[0] == 1
    assert ["dmesg"] in node.calls


def test_an_inactive_nvlink_fails(smi, efa4):
    code, report = gpu_health.check_node(P4D, runner=Node(nvlink=(0, _text("p4d_nvlink_inactive.txt"))), sysfs=efa4)
    assert code == 1 and report["problems"] == ["GPU 5 NVLink 3 is <inactive>"]


def test_fabric_manager_down_or_fabric_in_progress_fails(smi, efa4):
    code, report = gpu_health.check_node(P4D, runner=Node(systemctl=(3, "inactive\n")), sysfs=efa4)
    assert code == 1 and "nvidia-fabricmanager is inactive" in report["problems"][0]
    p5 = gpu_health.fabric_problems("active", _text("p5_query_fabric_in_progress.txt"))
    assert p5 == ["GPU fabric State In Progress, Status N/A"]
    assert gpu_health.fabric_problems("active", _text("p5_query_fabric_ok.txt")) == []


def test_efa_devices_are_counted_against_the_table(smi, tmp_path):
    sysfs = tmp_path / "ib"
    for i in range(3):  # 31 of 32 would pass a presence check; 3 of 4 fails here
        (sysfs / f"rdmap{i}").mkdir(parents=True)
    code, report = gpu_health.check_node(P4D, runner=Node(), sysfs=str(sysfs))
    assert code == 1 and report["problems"][0].startswith("expected 4 EFA device(s)")


def test_dcgm_level_2_failure_and_absence(smi, efa4):
    code, report = gpu_health.check_node(P4D, runner=Node(dcgmi=(226, _text("dcgm_diag_r2_fail.json"))), sysfs=efa4)
    assert code == 1 and report["problems"] == [
        "DCGM Memory failed on GPU 6: [{'warning': 'Memory test failed: 3 uncorrectable ECC errors on GPU 6', "
        "'error_id': 83}]"]
    code, report = gpu_health.check_node(P4D, runner=Node(dcgmi=(127, "")), sysfs=efa4)
    assert code == 0 and report["checks"]["dcgm"] == "skipped" and "dcgmi not installed" in report["warnings"][0]
    node = Node()
    gpu_health.check_node(P4D, runner=node, sysfs=efa4, dcgm_level=0)  # periodic runs: no DCGM
    assert not any(c[0] == "dcgmi" for c in node.calls)


def test_persistence_mode_and_pending_retirement_fail(smi, efa4):
    rows = _text("p4d_query_healthy.csv").strip().splitlines()
    rows[1] = "1, NVIDIA A100-SXM4-40GB, 550.90.07, Disabled, Enabled, 0, No"
    rows[2] = "2, NVIDIA A100-SXM4-40GB, 550.90.07, Enabled, Enabled, 0, Yes"
    smi("\n".join(rows))
    code, report = gpu_health.check_node(P4D, runner=Node(), sysfs=efa4)
    assert code == 1 and report["problems"] == ["GPU 1 persistence mode is Disabled (expected Enabled)",
                                                "GPU 2 has a page retirement pending (needs a GPU reset)"]


def test_program_takes_profiles(smi, tmp_path):
    report = tmp_path / "r.json"
    code = gpu_health.main(["--instance-type", "p4d.24xlarge", "--profiles", json.dumps({"p4d.24xlarge": {"gpus": 8}}),
                            "--dcgm-level", "0", "--report", str(report)])
    assert code == 0 and json.loads(report.read_text())["checks"]["gpus"] == "pass"
    assert gpu_health.main(["--instance-type", "p5.48xlarge", "--profiles", "{}"]) == 1


# ------------------------------------------------------------------------------------ the cluster side


def test_profiles_come_from_the_instance_table():
    assert instances.health_profile("p4d.24xlarge", True) == P4D
    assert instances.health_profile("p5.48xlarge", True)["efa"] == 32
    assert instances.health_profile("p5.4xlarge", True) == {"gpus": 1, "nvlink": False, "fabric_manager": False,
                                                            "efa": 1}
    assert instances.health_profile("g5.48xlarge", False) == {"gpus": 8, "nvlink": False, "fabric_manager": False}


@pytest.fixture(scope="module")
def batch_template():
    stack = new_stack()
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a"],
                                      private_subnet_ids=["subnet-0123456789abcdef0"])
    BatchTrainingCluster(stack, "C", vpc=vpc, subnet=vpc.private_subnets[0],
                         task_security_group=ec2.SecurityGroup.from_security_group_id(stack, "D", "sg-0default0000000000",
                                                                                       mutable=True),
                         image="123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1")
    return Template.from_stack(stack)


def test_unhealthy_node_alarm_and_node_permissions(batch_template):
    alarm = only(batch_template, "AWS::CloudWatch::Alarm")["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == (
        "mlinfra/GpuHealth", "UnhealthyNode", "Sum", 3600)
    assert alarm["Threshold"] == 2 and alarm["TreatMissingData"] == "notBreaching"
    policy = json.dumps([v["Properties"]["PolicyDocument"] for v in
                         batch_template.find_resources("AWS::IAM::Policy").values()])
    assert '"cloudwatch:namespace": "mlinfra/GpuHealth"' in policy and '"aws:TagKeys": ["mlinfra:gpu-health"]' in policy


def test_job_queue_cancels_jobs_stuck_runnable(batch_template):
    actions = only(batch_template, "AWS::Batch::JobQueue")["Properties"]["JobStateTimeLimitActions"]
    assert {(a["Reason"], a["MaxTimeSeconds"]) for a in actions} == {
        ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", 14400),
        ("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE", 600),
        ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", 600)}
    assert all(a["Action"] == "CANCEL" and a["State"] == "RUNNABLE" for a in actions)


@pytest.mark.parametrize(("kw", "match"), [
    ({"runnable_time_limit": cdk.Duration.minutes(5)}, r"runnable_time_limit must be 10 minutes to 24 hours"),
    ({"dcgm_level": 5}, "dcgm_level must be 0"),
    ({"unhealthy_nodes_per_hour": 0}, "unhealthy_nodes_per_hour must be >= 1"),
])
def test_health_options_validation(kw, match):
    stack = new_stack()
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-1", availability_zones=["us-east-1a"],
                                      private_subnet_ids=["subnet-1"])
    with pytest.raises(ValueError, match=match):
        BatchTrainingCluster(stack, "C", vpc=vpc, subnet=vpc.private_subnets[0], image="img:1", **kw)
