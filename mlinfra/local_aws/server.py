"""A moto server on a free localhost port, started and stopped by the local deploy."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCOUNT = "123456789012"
REGION = "us-east-1"

#: Run real ASL in Step Functions executions; no Docker for Lambda (see LOCAL_AWS.md).
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_env(port: int) -> dict[str, str]:
    """Environment for boto3 and the CDK CLI to talk to the emulator (never a real account)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=f"http://localhost:{port}",  # 'localhost', not 127.0.0.1: see LOCAL_AWS.md
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@dataclass
class MotoServer:
    """One moto server process; ``state_file`` lets a later ``destroy`` find a kept server."""

    port: int
    pid: int
    log_path: Path

    @property
    def endpoint_url(self) -> str:
        return f"http://localhost:{self.port}"

    @classmethod
    def start(cls, workdir: Path, port: int | None = None, timeout: float = 30.0) -> "MotoServer":
        port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "moto.log"
        log = open(log_path, "w")
        env = {**os.environ, "MOTO_PORT": str(port)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        server = cls(port=port, pid=proc.pid, log_path=log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode}; see {log_path}")
            try:
                server._request("GET", "/moto-api/data.json")
                break
            except OSError:
                time.sleep(0.2)
        else:
            server.stop()
            raise RuntimeError(f"moto server did not answer on port {port} within {timeout}s; see {log_path}")
        server._request("POST", "/moto-api/config", MOTO_CONFIG)
        return server

    def _request(self, method: str, path: str, body: dict | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    def reset(self) -> None:
        self._request("POST", "/moto-api/reset")
        self._request("POST", "/moto-api/config", MOTO_CONFIG)

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
            self._request("GET", "/moto-api/data.json")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            try:
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def save(self, state_file: Path) -> None:
        state_file.write_text(json.dumps({"port": self.port, "pid": self.pid, "log_path": str(self.log_path)}))

    @classmethod
    def load(cls, state_file: Path) -> "MotoServer | None":
        if not state_file.is_file():
            return None
        data = json.loads(state_file.read_text())
        return cls(port=data["port"], pid=data["pid"], log_path=Path(data["log_path"]))
