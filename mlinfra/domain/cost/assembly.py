"""Read a CDK cloud assembly (``cdk.out``): every CloudFormation stack, nested stage assemblies included.

Stacks are identified by what they deploy as: (environment, stack name). The same stack reached twice (an app
that synthesizes a stack at the top level and again inside a CDK Pipelines stage for the same account and
Region) is counted once, at its first appearance. Pure Python (no aws_cdk import).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator

__all__ = ["AssemblyStack", "read_assembly"]

UNKNOWN_ENV = "aws://unknown-account/unknown-region"


@dataclasses.dataclass(frozen=True)
class AssemblyStack:
    name: str
    environment: str
    template: dict[str, Any]
    directory: Path
    artifact_id: str

    @property
    def account(self) -> str:
        return self.environment.removeprefix("aws://").split("/")[0]

    @property
    def region(self) -> str:
        return self.environment.removeprefix("aws://").split("/")[-1]


def read_assembly(directory: str | Path) -> list[AssemblyStack]:
    """Every distinct stack of the assembly in ``directory`` and of the assemblies nested in it."""
    root = Path(directory)
    if not (root / "manifest.json").is_file():
        raise FileNotFoundError(f"{root}: not a cloud assembly (no manifest.json); synthesize the app first "
                                f"(`cdk synth -o {root}`) or let `mlinfra cost` synthesize it")
    seen: set[tuple[str, str]] = set()
    stacks: list[AssemblyStack] = []
    for stack in _walk(root, set()):
        ident = (stack.environment, stack.name)
        if ident not in seen:
            seen.add(ident)
            stacks.append(stack)
    return stacks


def _walk(directory: Path, visited: set[Path]) -> Iterator[AssemblyStack]:
    directory = directory.resolve()
    if directory in visited:
        return
    visited.add(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    artifacts: dict[str, Any] = manifest.get("artifacts") or {}
    nested: list[Path] = []
    for artifact_id, artifact in artifacts.items():
        kind = artifact.get("type")
        props = artifact.get("properties") or {}
        if kind == "aws:cloudformation:stack":
            template = json.loads((directory / props["templateFile"]).read_text())
            yield AssemblyStack(
                name=props.get("stackName") or artifact_id,
                environment=artifact.get("environment") or UNKNOWN_ENV,
                template=template, directory=directory, artifact_id=artifact_id,
            )
        elif kind == "cdk:cloud-assembly":
            nested.append(directory / props["directoryName"])
    for sub in nested:
        yield from _walk(sub, visited)
