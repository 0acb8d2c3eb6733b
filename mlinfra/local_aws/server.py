"""The emulator process (moto) the local deploy starts, finds again and stops, always by its process id.

Process rules (issue 14, item 7):

- the server is :mod:`mlinfra.local_aws.server_main`, started in its own session; its process id and a random
  token are written to the state file *before* it is waited for, so a deploy killed at any step (even while
  the server starts) leaves a server that ``destroy-local`` finds;
- a server is used or stopped only when its process command line carries our token and, once it answers, its
  identity route returns the same token: the deploy never adopts a server it did not start, and
  ``destroy-local`` never kills a process that merely reused the id;
- liveness is the process plus a cheap API call (STS GetCallerIdentity), never ``/moto-api/data.json`` (it
  answers 500 once Lambda or Batch resources exist without Docker).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from mlinfra.local_aws.server_main import ACCOUNT_PATH, IDENTITY_PATH

#: The emulator's default account and region (moto's default account). Stacks pinned to another account or
#: region are served too (see :func:`emulator_env` and ``LocalDeploy.check_environments``).
ACCOUNT = "123456789012"
REGION = "us-east-1"

#: The module the emulator process runs (``python -m``); its command line identifies it.
SERVER_MODULE = "mlinfra.local_aws.server_main"

#: Run real ASL in Step Functions executions; no Docker for Lambda (see LOCAL_AWS.md).
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


class ServerError(RuntimeError):
    """The emulator could not be started or answered wrongly; the message names its log."""


def emulator_env(port: int, region: str = REGION, account: str = ACCOUNT) -> dict[str, str]:
    """Environment for boto3 and the CDK CLI to talk to the emulator (never a real account).

    The access key names the account: the CDK CLI caches the account of each access key on disk
    (``~/.cdk/cache``), so one key for every account would make it believe the first account it saw."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=f"http://localhost:{port}",  # 'localhost', not 127.0.0.1: see LOCAL_AWS.md
        AWS_ACCESS_KEY_ID=f"MLINFRALOCAL{account}",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class MotoServer:
    """One emulator process; ``save``/``load`` let a later ``destroy-local`` find it."""

    pid: int
    token: str
    log_path: Path
    port: int = 0
    account: str = ACCOUNT
    #: other processes this deploy started (the CDK CLI), stopped with the server
    helpers: list[int] = field(default_factory=list)

    @property
    def endpoint_url(self) -> str:
        return f"http://localhost:{self.port}"

    # ------------------------------------------------------------------ start
    @classmethod
    def start(cls, workdir: Path, account: str = ACCOUNT, timeout: float = 60.0,
              on_spawn: Callable[["MotoServer"], None] | None = None,
              cancel: threading.Event | None = None) -> "MotoServer":
        """Start the emulator. ``on_spawn`` is called (with the port still 0) as soon as the process exists, so the
        caller can record it before anything can interrupt the wait."""
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "moto.log"
        ready = workdir / "server.port"
        ready.unlink(missing_ok=True)
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if k != "MOTO_PORT"}
        env["MOTO_ACCOUNT_ID"] = account  # the account every request lands in (see check_environments)
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", SERVER_MODULE, "--token", token, "--ready", str(ready)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        server = cls(pid=proc.pid, token=token, log_path=log_path, account=account)
        record = on_spawn or (lambda _server: None)
        try:
            record(server)
            deadline = time.monotonic() + timeout
            while not ready.exists():
                if proc.poll() is not None:
                    raise ServerError(f"the emulator exited with {proc.returncode} while starting; see {log_path}:\n"
                                      + server.log_tail())
                if time.monotonic() > deadline:
                    raise ServerError(f"the emulator did not start within {timeout:.0f}s; see {log_path}")
                if cancel is not None and cancel.is_set():
                    raise ServerError("the emulator's start was cancelled")
                time.sleep(0.05)
            server.port = int(ready.read_text())
            record(server)
            identity = json.loads(server._request("GET", IDENTITY_PATH))
            if identity != {"pid": proc.pid, "token": token}:
                raise ServerError(f"port {server.port} is answered by another server ({identity}): not adopting it")
            server._request("POST", "/moto-api/config", MOTO_CONFIG)
        except BaseException:
            server.stop()
            raise
        return server

    def set_account(self, account: str) -> None:
        """The account every request lands in from now on (before any deploy)."""
        self._request("POST", ACCOUNT_PATH, {"account": account})

    def _request(self, method: str, path: str, body: dict | None = None, timeout: float = 10) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------------ identity and liveness
    def is_ours(self) -> bool:
        """The recorded process exists and is the emulator started with our token (not a reused id)."""
        cmd = _cmdline(self.pid)
        return pid_alive(self.pid) and SERVER_MODULE in cmd and self.token in cmd

    def answers(self) -> bool:
        """Ours, and it answers an API call (STS GetCallerIdentity) with our identity route confirming it."""
        if not self.is_ours() or not self.port:
            return False
        try:
            identity = json.loads(self._request("GET", IDENTITY_PATH, timeout=5))
            if identity.get("token") != self.token:
                return False
            import boto3

            boto3.client("sts", endpoint_url=f"http://127.0.0.1:{self.port}", region_name=REGION,
                         aws_access_key_id="testing", aws_secret_access_key="testing").get_caller_identity()
            return True
        except Exception:
            return False

    # ------------------------------------------------------------------ stop
    def stop(self, grace: float = 5.0) -> None:
        """Stop the emulator and the helper processes this deploy recorded, each by its id (whole group)."""
        for pid in [*self.helpers, self.pid]:
            if pid == self.pid and not (self.is_ours() or not pid_alive(pid)):
                continue  # the id now belongs to another program: leave it alone
            _stop_group(pid, grace)

    # ------------------------------------------------------------------ state file
    def save(self, state_file: Path) -> None:
        state = {**asdict(self), "log_path": str(self.log_path)}
        # One temporary file per writer: the deploy saves from its main thread and from the thread that starts the
        # emulator, and a shared name let one writer's rename take the other's file away (FileNotFoundError).
        tmp = state_file.with_name(f"{state_file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(state_file)

    @classmethod
    def load(cls, state_file: Path) -> "MotoServer | None":
        try:
            data = json.loads(state_file.read_text())
            return cls(pid=int(data["pid"]), token=str(data["token"]), log_path=Path(data["log_path"]),
                       port=int(data.get("port") or 0), account=str(data.get("account", ACCOUNT)),
                       helpers=[int(p) for p in data.get("helpers", [])])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _stop_group(pid: int, grace: float) -> None:
    """SIGTERM the process group led by ``pid`` (processes are started as session leaders), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not pid_alive(pid):
            return
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if _wait_gone(pid, grace):
            return


def _wait_gone(pid: int, timeout: float) -> bool:
    """Reap ``pid`` if it is our child, or wait for another parent's process to go; True once it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False
