"""HyperPod lifecycle scripts: the step plan (pure Python), shellcheck, and on_init_complete.sh run twice on a fake node
(stubbed mount, docker, enroot) to prove every step is idempotent."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlinfra.userdata.hyperpod import scripts_dir

sys.path.insert(0, str(scripts_dir()))
import lifecycle  # noqa: E402  (the node-side module, stdlib only)

CONFIG = {
    "cluster_name": "ml-hyperpod",
    "lustre": {"dns_name": "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com", "mount_name": "abcdef12",
               "mount_path": "/fsx"},
    "groups": {"controller": {"node_type": "Controller", "accelerators": 0, "mount_lustre": True},
               "login": {"node_type": "Login", "accelerators": 0, "mount_lustre": True},
               "gpu": {"node_type": "Compute", "accelerators": 8, "mount_lustre": True},
               "cpu": {"node_type": "Compute", "accelerators": 0, "mount_lustre": False}},
    "exporters": {"node": "quay.io/prometheus/node-exporter:v1.9.1", "dcgm": "nvcr.io/nvidia/k8s/dcgm-exporter:x"},
    "enroot_version": "3.5.0",
    "pyxis_version": "0.20.0",
    "ecr_registries": ["123456789012.dkr.ecr.us-east-1.amazonaws.com"],
    "bridge": {"queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs", "region": "us-east-1"},
}
RESOURCES = {"InstanceGroups": [
    {"Name": "controller", "Instances": [{"InstanceName": "c-1", "CustomerIpAddress": "10.0.0.10"}]},
    {"Name": "gpu", "Instances": [{"InstanceName": "g-1", "CustomerIpAddress": "10.0.0.20"},
                                  {"InstanceName": "g-2", "CustomerIpAddress": "10.0.0.21"}]},
]}


# ------------------------------------------------------------------ the plan


@pytest.mark.parametrize(("group", "steps"), [
    ("controller", ["lustre", "exporters", "bridge"]),
    ("login", ["lustre", "containers"]),
    ("gpu", ["lustre", "containers", "exporters"]),
    ("cpu", ["containers", "exporters"]),
])
def test_plan_by_node_type(group, steps) -> None:
    assert lifecycle.plan(CONFIG, group) == steps


def test_no_lustre_step_without_a_file_system() -> None:
    assert lifecycle.plan({**CONFIG, "lustre": None}, "gpu") == ["containers", "exporters"]


def test_no_bridge_without_a_job_queue() -> None:
    assert lifecycle.plan({**CONFIG, "bridge": None}, "controller") == ["lustre", "exporters"]


def test_own_group_by_address() -> None:
    assert lifecycle.own_group(RESOURCES, ["127.0.0.1", "10.0.0.21"]) == "gpu"
    with pytest.raises(lifecycle.LifecycleError, match="no instance group lists this node's addresses"):
        lifecycle.own_group(RESOURCES, ["10.9.9.9"])


def test_gpu_exporter_only_on_accelerated_groups() -> None:
    assert lifecycle.step_env(CONFIG, "gpu", "exporters")["DCGM_EXPORTER_IMAGE"].startswith("nvcr.io")
    assert lifecycle.step_env(CONFIG, "cpu", "exporters")["DCGM_EXPORTER_IMAGE"] == ""


@pytest.mark.parametrize(("config", "group", "message"), [
    (CONFIG, "nope", "groups has no entry 'nope'"),
    ({**CONFIG, "groups": {"gpu": {"node_type": "Worker"}}}, "gpu", "node_type must be one of"),
    ({**CONFIG, "lustre": {"dns_name": "x"}}, "gpu", "lustre needs ['mount_name', 'mount_path']"),
])
def test_bad_configuration_names_the_field(config, group, message) -> None:
    with pytest.raises(lifecycle.LifecycleError) as exc:
        lifecycle.plan(config, group)
        lifecycle.step_env(config, group, "lustre")
    assert message in str(exc.value)


# ------------------------------------------------------------------ the scripts


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    scripts = [str(p) for p in sorted(scripts_dir().rglob("*.sh"))]
    assert len(scripts) == 5
    result = subprocess.run([str(shellcheck), "--severity=style", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


STUBS = {
    # mount.lustre present: the client is installed, so apt-get must not run.
    "mount.lustre": "exit 0",
    "apt-get": 'echo "apt-get $*" >> "$STATE/calls"; exit 1',
    "uname": "echo 6.8.0-test",
    "dpkg": "echo amd64",
    "mountpoint": '[[ -f "$STATE/mounted" ]]',
    "mount": 'echo "mount $*" >> "$STATE/calls"; touch "$STATE/mounted"',
    "enroot": 'echo "$ENROOT_VERSION"',
    "curl": 'echo "curl $*" >> "$STATE/calls"; exit 1',
    "git": 'echo "git $*" >> "$STATE/calls"; exit 1',
    "sleep": "exit 0",
    "systemctl": 'echo "systemctl $*" >> "$STATE/calls"; [[ "$1" != is-active ]] || [[ "$3" == slurmd ]]',
    "docker": '''case "$1" in
  ps) cat "$STATE/containers" 2>/dev/null || true ;;
  rm) ;;
  run) echo "docker $*" >> "$STATE/calls"; for a in "$@"; do [[ $prev == --name ]] && echo "$a" >> "$STATE/containers"; prev=$a; done ;;
esac''',
}


@pytest.fixture()
def node(tmp_path: Path) -> dict:
    """A fake GPU node: the scripts, their config, a fake root and stubbed commands on PATH."""
    scripts = tmp_path / "scripts"
    shutil.copytree(scripts_dir(), scripts, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    (scripts / "lifecycle-config.json").write_text(json.dumps(CONFIG))
    root = tmp_path / "root"
    (root / "opt/ml/config").mkdir(parents=True)
    (root / "opt/ml/config/resource_config.json").write_text(json.dumps(RESOURCES))
    (root / "usr/local/lib/slurm").mkdir(parents=True)
    (root / "usr/local/lib/slurm/spank_pyxis.so").write_text("")  # pyxis already built into the AMI
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in STUBS.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MLINFRA_ROOT": str(root), "STATE": str(state),
           "MLINFRA_NODE_ADDRESSES": "10.0.0.20"}
    return {"scripts": scripts, "root": root, "state": state, "env": env}


def _run(node: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(node["scripts"] / "on_init_complete.sh")], env=node["env"], capture_output=True,
                          text=True, timeout=60)


def test_on_init_complete_runs_every_step_once_and_again_safely(node) -> None:
    first = _run(node)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "steps for this node: lustre containers exporters" in first.stdout
    second = _run(node)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "/fsx already mounted" in second.stdout

    calls = (node["state"] / "calls").read_text().splitlines()
    assert [c for c in calls if c.startswith("mount ")] == [
        "mount -t lustre -o relatime,flock fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com@tcp:/abcdef12 "
        f"{node['root']}/fsx"]
    assert not [c for c in calls if c.startswith(("apt-get", "curl", "git"))], "nothing installed twice or at all"
    fstab = (node["root"] / "etc/fstab").read_text().splitlines()
    assert len(fstab) == 1 and fstab[0].startswith("fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com@tcp:/abcdef12 "
                                                   "/fsx lustre ")
    # pyxis registered with HyperPod's Slurm (/opt/slurm), once, and slurmd restarted once to load it
    assert (node["root"] / "opt/slurm/etc/plugstack.conf.d/pyxis.conf").read_text() == \
        "required /usr/local/lib/slurm/spank_pyxis.so\n"
    assert (node["root"] / "opt/slurm/etc/plugstack.conf").read_text() == \
        "include /opt/slurm/etc/plugstack.conf.d/*\n"
    assert calls.count("systemctl restart slurmd") == 1
    assert (node["root"] / "fsx/mlinfra/jobs").is_dir(), "the job bridge's log folder on the cache"
    assert "ENROOT_CACHE_PATH /tmp/enroot/cache" in (node["root"] / "etc/enroot/enroot.conf").read_text()
    assert (node["root"] / "etc/enroot/config/.credentials").read_text() == (
        "machine 123456789012.dkr.ecr.us-east-1.amazonaws.com login AWS password "
        "$(aws ecr get-login-password --region us-east-1)\n")
    runs = [c for c in calls if c.startswith("docker run")]
    assert len(runs) == 2 and any("dcgm-exporter" in r for r in runs), runs


def test_on_init_complete_fails_when_the_node_is_not_in_the_cluster(node) -> None:
    node["env"]["MLINFRA_NODE_ADDRESSES"] = "10.9.9.9"
    result = _run(node)
    assert result.returncode != 0
    assert "no instance group lists this node's addresses" in result.stderr


def test_mount_failure_fails_the_step(node) -> None:
    (Path(node["env"]["PATH"].split(":")[0]) / "mount").write_text("#!/bin/bash\nexit 32\n")
    result = _run(node)
    assert result.returncode != 0
    assert "could not mount" in result.stdout


def test_controller_installs_the_bridge_service_once(node) -> None:
    node["env"]["MLINFRA_NODE_ADDRESSES"] = "10.0.0.10"
    for _ in range(2):
        result = _run(node)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "steps for this node: lustre exporters bridge" in result.stdout and "bridge: unit unchanged" in result.stdout
    unit = (node["root"] / "etc/systemd/system/mlinfra-slurm-bridge.service").read_text()
    assert "Environment=MLINFRA_JOB_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123456789012/jobs" in unit
    assert "Environment=MLINFRA_SHARED_PATH=/fsx" in unit, "bridge state on the cache survives a new controller"
    assert (node["root"] / "opt/mlinfra/slurm_bridge.py").exists()
    calls = (node["state"] / "calls").read_text().splitlines()
    assert calls.count("systemctl restart mlinfra-slurm-bridge.service") == 1
