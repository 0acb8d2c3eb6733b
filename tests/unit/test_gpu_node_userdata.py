"""The GPU node bootstrap: the health check against a fake nvidia-smi, and the rendered user data script."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlinfra.userdata import OnFailure, gpu_health, render_gpu_node_script

DATA = Path(__file__).parent / "data" / "gpu_health"
HEALTHY_8 = (DATA / "p4d_query_healthy.csv").read_text().strip()


def _fake_smi(tmp_path: Path, stdout: str = "", exit_code: int = 0, sleep: float = 0) -> Path:
    """A fake nvidia-smi on its own PATH dir that prints ``stdout`` and checks the query it is asked."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "nvidia-smi"
    body = stdout.replace("'", "'\\''")
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --query-gpu={",".join(gpu_health.QUERY_FIELDS)}) ;; *) echo "bad query $1" >&2; exit 9;; esac\n'
        f"sleep {sleep}\n"
        f"printf '%s\\n' '{body}'\n"
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir


@pytest.fixture
def on_path(monkeypatch):
    def use(bindir: Path) -> None:
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin:/bin")
    return use


def test_healthy_node(tmp_path, on_path):
    on_path(_fake_smi(tmp_path, HEALTHY_8))
    code, report = gpu_health.check(8, min_driver="535.0")
    assert code == gpu_health.EXIT_HEALTHY and report["healthy"] and len(report["gpus"]) == 8


def test_missing_gpu_is_unhealthy(tmp_path, on_path):
    on_path(_fake_smi(tmp_path, "\n".join(HEALTHY_8.splitlines()[:7])))
    code, report = gpu_health.check(8)
    assert code == gpu_health.EXIT_UNHEALTHY
    assert report["problems"] == ["expected 8 GPU(s), nvidia-smi lists 7"]


def test_uncorrected_ecc_errors_are_unhealthy(tmp_path, on_path):
    rows = HEALTHY_8.splitlines()
    rows[3] = "3, NVIDIA A100-SXM4-40GB, 550.90.07, Enabled, Enabled, 2, No"
    on_path(_fake_smi(tmp_path, "\n".join(rows)))
    code, report = gpu_health.check(8)
    assert code == 1 and report["problems"] == ["GPU 3 (NVIDIA A100-SXM4-40GB) has 2 uncorrected ECC error(s)"]


def test_old_or_mixed_driver_is_unhealthy(tmp_path, on_path):
    on_path(_fake_smi(tmp_path, HEALTHY_8))
    assert gpu_health.check(8, min_driver="560.1")[1]["problems"] == [
        "driver 550.90.07 is older than the required 560.1"]
    mixed = HEALTHY_8.replace("0, NVIDIA A100-SXM4-40GB, 550.90.07", "0, NVIDIA A100-SXM4-40GB, 535.1.1", 1)
    assert "different driver versions" in gpu_health.evaluate(gpu_health.parse(mixed), 8)[0]


def test_ecc_not_reported_is_not_an_error():
    gpus = gpu_health.parse("0, NVIDIA L4, 550.90.07, Enabled, [N/A], [N/A], [N/A]")
    assert gpus[0].uncorrected_ecc_errors is None and gpu_health.evaluate(gpus, 1) == []


def test_nvidia_smi_missing_failing_or_garbled(tmp_path, on_path):
    on_path(tmp_path / "empty")
    code, report = gpu_health.check(8)
    assert code == gpu_health.EXIT_NO_SMI and "not found on PATH" in report["problems"][0]
    on_path(_fake_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the driver", exit_code=9))
    code, report = gpu_health.check(8)
    assert code == 2 and "exited 9" in report["problems"][0]
    on_path(_fake_smi(tmp_path, "garbage line"))
    assert gpu_health.check(8)[0] == 2


def test_nvidia_smi_hang_times_out(tmp_path, on_path, monkeypatch):
    on_path(_fake_smi(tmp_path, HEALTHY_8, sleep=5))
    with pytest.raises(gpu_health.NvidiaSmiError, match="did not answer within 0.5 s"):
        gpu_health.run_nvidia_smi(timeout=0.5)


def test_expected_count_by_instance_type():
    assert gpu_health.expected_for("p4d.24xlarge", "g5.48xlarge=8,p4d.24xlarge=8") == 8
    with pytest.raises(ValueError, match="not in the expected-GPU table"):
        gpu_health.expected_for("p5.48xlarge", "p4d.24xlarge=8")


def test_script_as_a_program_writes_its_report(tmp_path):
    """The file runs standalone (stdlib only), as user data runs it on the node."""
    bindir = _fake_smi(tmp_path, HEALTHY_8)
    report = tmp_path / "report.json"
    env = {"PATH": f"{bindir}{os.pathsep}/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, gpu_health.__file__, "--instance-type", "p4d.24xlarge",
                           "--expected-by-type", "p4d.24xlarge=8", "--report", str(report)],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["healthy"] is True
    proc = subprocess.run([sys.executable, gpu_health.__file__, "--expected-gpus", "4"], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "expected 4 GPU(s)" in proc.stdout


def test_health_check_imports_only_the_standard_library():
    import ast

    tree = ast.parse(Path(gpu_health.__file__).read_text())
    imports = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imports |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imports and imports <= set(sys.stdlib_module_names)


# ------------------------------------------------------------------------------------ the bash bootstrap


def _render(**kw):
    args = {"expected_gpus_by_type": {"p4d.24xlarge": 8}, "lustre_dns_name": "fs-1.fsx.us-east-1.amazonaws.com",
            "lustre_mount_name": "abcdef", **kw}
    return render_gpu_node_script(**args)


def test_rendered_script_is_valid_bash_with_no_placeholders(tmp_path):
    text = _render()
    assert "@@" not in text
    path = tmp_path / "node.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True).returncode == 0


def test_rendered_script_content():
    text = _render(min_driver="535.0")
    assert 'LUSTRE_DNS="fs-1.fsx.us-east-1.amazonaws.com"' in text and 'LUSTRE_MOUNT_NAME="abcdef"' in text
    assert "lustre defaults,relatime,flock,_netdev" in text
    assert "export FI_PROVIDER=efa" in text and "NCCL_SOCKET_IFNAME" in text
    assert """PROFILES='{"p4d.24xlarge":{"gpus":8}}'""" in text and 'MIN_DRIVER="535.0"' in text
    import ast

    shipped = gpu_health_source(text)  # travels inside, gzipped, without docstrings
    assert ast.dump(ast.parse(shipped)) != "" and "def check_node(" in shipped and '"""' not in shipped
    assert "X-aws-ec2-metadata-token" in text  # IMDSv2 only
    for word in ("yum ", "dnf ", "apt-get", "pip install", "wget ", "curl -sfL http"):
        assert word not in text, f"the bootstrap must install nothing: found {word!r}"


def gpu_health_source(script: str) -> str:
    import base64
    import gzip
    import re

    (blob,) = re.findall(r"echo '([A-Za-z0-9+/=]+)' \| base64 -d \| gunzip", script)
    return gzip.decompress(base64.b64decode(blob)).decode()


def test_render_validation():
    with pytest.raises(ValueError, match=r"^on_failure must be one of 'shutdown', 'report' \(OnUnhealthy\), got: 'reboot'$"):
        _render(on_failure="reboot")
    with pytest.raises(ValueError, match="lustre_mount_point must be an absolute path"):
        _render(lustre_mount_point="fsx")


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash needed")
def test_bootstrap_marks_node_unhealthy_when_gpus_are_missing(tmp_path):
    """Run the real script with the system commands it calls replaced by fakes: IMDS answers p4d.24xlarge, the
    fake nvidia-smi lists 7 GPUs, so it must record the failure and (ON_FAILURE=shutdown) call shutdown."""
    root = tmp_path / "root"
    text = _render(lustre_dns_name="", efa_enabled=False, on_failure=OnFailure.SHUTDOWN)
    for src, dst in (("/var/lib/mlinfra", f"{root}/state"), ("/opt/mlinfra", f"{root}/opt"),
                     ("/var/log/mlinfra-node.log", f"{root}/node.log"), ("/etc/profile.d", f"{root}"),
                     ("/etc/systemd/system", f"{root}/systemd")):
        text = text.replace(src, dst)
    bindir = _fake_smi(tmp_path, "\n".join(HEALTHY_8.splitlines()[:7]))
    (bindir / "curl").write_text("#!/bin/sh\ncase \"$*\" in *api/token*) echo tok;; *) echo p4d.24xlarge;; esac\n")
    (bindir / "shutdown").write_text(f"#!/bin/sh\necho \"$@\" > {root}/shutdown-called\n")
    (bindir / "logger").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "aws").write_text(f"#!/bin/sh\necho \"$@\" >> {root}/aws-calls\n")
    (bindir / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {root}/systemctl-calls\n")
    (bindir / "python3").symlink_to(sys.executable)
    for f in ("curl", "shutdown", "logger", "aws", "systemctl"):
        (bindir / f).chmod(0o755)
    script = tmp_path / "node.sh"
    script.write_text(text)
    proc = subprocess.run(["bash", str(script)], env={"PATH": f"{bindir}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "expected 8 GPU(s), nvidia-smi lists 7" in (root / "state" / "unhealthy").read_text()
    assert (root / "shutdown-called").read_text().strip() == "-h now"
    calls = (root / "aws-calls").read_text()  # counted for the alarm and tagged before powering off
    assert "cloudwatch put-metric-data" in calls and "--metric-name UnhealthyNode" in calls
    assert "ec2 create-tags" in calls and "Key=mlinfra:gpu-health,Value=unhealthy" in calls
    # and a healthy node passes and clears the marker
    bindir.joinpath("nvidia-smi").unlink()
    _fake_smi(tmp_path, HEALTHY_8)
    (root / "shutdown-called").unlink()
    proc = subprocess.run(["bash", str(script)], env={"PATH": f"{bindir}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (root / "state" / "unhealthy").exists() and not (root / "shutdown-called").exists()
    assert "GPU health check passed (p4d.24xlarge)" in (root / "node.log").read_text()
    # the periodic check is installed as a systemd timer
    (root / "systemd").mkdir(exist_ok=True)
    proc = subprocess.run(["bash", str(script)], env={"PATH": f"{bindir}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert "OnUnitActiveSec=15min" in (root / "systemd" / "mlinfra-gpu-health.timer").read_text()
    assert "enable --now mlinfra-gpu-health.timer" in (root / "systemctl-calls").read_text()
    assert "--dcgm-level 0" in (root / "opt" / "gpu-health-periodic.sh").read_text()


def test_rendered_script_fits_ec2_user_data_limit():
    """EC2 takes at most 16 KB of user data (before base64): both parts, with room for the MIME wrapper."""
    from mlinfra.domain.instances import health_profile
    from mlinfra.userdata import render_node_install_script

    types = ("p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5e.48xlarge")
    text = render_gpu_node_script(profiles_by_type={t: health_profile(t, True) for t in types},
                                  lustre_dns_name="fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com",
                                  lustre_mount_name="abcdefgh", cluster_id="TrainingBatchClusterC0FFEE12")
    assert len(text.encode()) + len(render_node_install_script().encode()) < 15 * 1024
