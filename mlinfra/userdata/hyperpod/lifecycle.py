#!/usr/bin/env python3
"""Which lifecycle steps a HyperPod node runs, from ``lifecycle-config.json`` and the node's resource config.

Standard library only (it runs on the node's system Python before anything is installed). Usage on a node:
``python3 lifecycle.py plan`` prints one step name per line; ``python3 lifecycle.py env STEP`` prints the
step's settings as ``KEY=value`` lines, each value shell-quoted. Exit 2 with a message on a bad configuration.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

CONFIG = Path(__file__).with_name("lifecycle-config.json")
#: Written by HyperPod on every node: the cluster's instance groups and their instances. MLINFRA_ROOT prefixes
#: it (empty on a node; a scratch folder in the tests), as it prefixes every system path of the steps.
RESOURCE_CONFIG = Path(os.environ.get("MLINFRA_ROOT", "") + "/opt/ml/config/resource_config.json")

#: Steps by Slurm node type, in order. Compute nodes get the GPU exporter only when accelerated; the controller
#: runs the Slurm job bridge when the cluster has a job queue.
STEPS: dict[str, tuple[str, ...]] = {
    "Controller": ("lustre", "exporters", "bridge"),
    "Login": ("lustre", "containers"),
    "Compute": ("lustre", "containers", "exporters"),
}


class LifecycleError(Exception):
    """A configuration the node cannot act on (the message says which field)."""


def own_group(resource_config: dict[str, Any], addresses: Iterable[str]) -> str:
    """The instance group whose instance has one of this node's IP ``addresses``."""
    mine = set(addresses)
    for group in resource_config.get("InstanceGroups") or []:
        for inst in group.get("Instances") or []:
            if inst.get("CustomerIpAddress") in mine:
                return str(group["Name"])
    raise LifecycleError(f"resource_config.json: no instance group lists this node's addresses {sorted(mine)}")


def group_settings(config: dict[str, Any], group: str) -> dict[str, Any]:
    groups = config.get("groups")
    if not isinstance(groups, dict) or group not in groups:
        raise LifecycleError(f"lifecycle-config.json: groups has no entry {group!r}, known: "
                             f"{sorted(groups) if isinstance(groups, dict) else groups!r}")
    settings = groups[group]
    if settings.get("node_type") not in STEPS:
        raise LifecycleError(f"lifecycle-config.json: groups.{group}.node_type must be one of {sorted(STEPS)}, "
                             f"got: {settings.get('node_type')!r}")
    return settings


def plan(config: dict[str, Any], group: str) -> list[str]:
    """The steps of ``group``: by node type, without ``lustre`` when no file system is configured or the
    group does not mount it."""
    settings = group_settings(config, group)
    steps = list(STEPS[settings["node_type"]])
    if "lustre" in steps and not (config.get("lustre") and settings.get("mount_lustre", True)):
        steps.remove("lustre")
    if "bridge" in steps and not config.get("bridge"):
        steps.remove("bridge")
    return steps


def step_env(config: dict[str, Any], group: str, step: str) -> dict[str, str]:
    """The environment of one step (strings only)."""
    settings = group_settings(config, group)
    if step == "lustre":
        fs = config.get("lustre") or {}
        missing = [k for k in ("dns_name", "mount_name", "mount_path") if not fs.get(k)]
        if missing:
            raise LifecycleError(f"lifecycle-config.json: lustre needs {missing}")
        return {"FSX_DNS_NAME": fs["dns_name"], "FSX_MOUNT_NAME": fs["mount_name"], "FSX_MOUNT_PATH": fs["mount_path"]}
    if step == "containers":
        return {"ENROOT_VERSION": str(config.get("enroot_version", "")),
                "PYXIS_VERSION": str(config.get("pyxis_version", "")),
                "ECR_REGISTRIES": " ".join(config.get("ecr_registries") or [])}
    if step == "exporters":
        exporters = config.get("exporters") or {}
        return {"NODE_EXPORTER_IMAGE": str(exporters.get("node", "")),
                "DCGM_EXPORTER_IMAGE": str(exporters.get("dcgm", "")) if settings.get("accelerators", 0) else ""}
    if step == "bridge":
        bridge = config.get("bridge") or {}
        missing = [k for k in ("queue_url", "region") if not bridge.get(k)]
        if missing:
            raise LifecycleError(f"lifecycle-config.json: bridge needs {missing}")
        lustre = config.get("lustre") or {}
        shared = lustre.get("mount_path", "") if settings.get("mount_lustre", True) else ""
        return {"JOB_QUEUE_URL": bridge["queue_url"], "AWS_REGION": bridge["region"],
                "MLINFRA_SCRIPTS_DIR": str(CONFIG.parent), "SHARED_PATH": shared}
    raise LifecycleError(f"unknown step {step!r}; known: lustre, containers, exporters, bridge")


def _addresses() -> list[str]:
    if os.environ.get("MLINFRA_NODE_ADDRESSES"):  # tests and debugging: this node's addresses, space-separated
        return os.environ["MLINFRA_NODE_ADDRESSES"].split()
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout.split()
    return out or [socket.gethostbyname(socket.gethostname())]


def main(argv: list[str]) -> int:
    try:
        config = json.loads(CONFIG.read_text())
        group = own_group(json.loads(RESOURCE_CONFIG.read_text()), _addresses())
        if argv[:1] == ["plan"]:
            print("\n".join(plan(config, group)))
        elif argv[:1] == ["env"] and len(argv) == 2:
            for key, value in step_env(config, group, argv[1]).items():
                print(f"{key}={shlex.quote(value)}")
        else:
            print("usage: lifecycle.py plan | env STEP", file=sys.stderr)
            return 2
    except (LifecycleError, OSError, ValueError, KeyError) as exc:
        print(f"lifecycle: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
