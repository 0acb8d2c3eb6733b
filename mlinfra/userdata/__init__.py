"""User data of GPU training nodes (package data): the bootstrap script and the GPU health check.

``gpu_node.sh`` is a template with ``@@NAME@@`` placeholders; :func:`render_gpu_node_script` fills them
(values may be CDK tokens: the result is then a token string that CloudFormation joins). ``gpu_health.py``
travels inside the script gzipped and base64-encoded (EC2 takes 16 KB of user data) and runs on the node with
the AMI's python3. ``node_install.sh`` is the part before it that installs the EFA software and the Lustre
client when the image lacks them.
"""

from __future__ import annotations

import enum
from importlib import resources
from typing import Mapping

from mlinfra.domain.choices import choice

__all__ = ["render_gpu_node_script", "render_node_install_script", "script_text", "OnUnhealthy", "OnFailure",
           "EFA_INSTALLER_VERSION", "METRIC_NAMESPACE"]

#: The EFA installer release the install part downloads (``latest``, or a pinned release such as ``1.43.2``).
EFA_INSTALLER_VERSION = "latest"


class OnUnhealthy(enum.StrEnum):
    """What a node does when its health checks fail. A ``str``: ``OnUnhealthy.SHUTDOWN == "shutdown"``."""

    #: Power off; the launch template's shutdown behaviour terminates it and the scheduler replaces it.
    SHUTDOWN = "shutdown"
    #: Only record ``/var/lib/mlinfra/unhealthy`` and log (for debugging a node).
    REPORT = "report"


#: The former name of :class:`OnUnhealthy` (its members and values are unchanged).
OnFailure = OnUnhealthy


def script_text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text()


def render_node_install_script(*, efa_enabled: bool = True, efa_installer_version: str = EFA_INSTALLER_VERSION) -> str:
    """The first user-data part: install the EFA software and the Lustre client when the image lacks them."""
    import re

    if not re.fullmatch(r"latest|\d+\.\d+\.\d+", efa_installer_version):
        raise ValueError(f"efa_installer_version must be 'latest' or a release such as '1.43.2', got: "
                         f"{efa_installer_version!r}")
    text = script_text("node_install.sh")
    for key, value in {"EFA_ENABLED": "true" if efa_enabled else "false",
                       "EFA_INSTALLER_VERSION": efa_installer_version}.items():
        text = text.replace(f"@@{key}@@", value)
    return text


def _without_docstrings(source: str) -> str:
    """The program without its docstrings (user data is limited to 16 KB); behaviour unchanged."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body and isinstance(
                node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None), ast.Constant) and \
                isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
    return "#!/usr/bin/env python3\n" + ast.unparse(tree) + "\n"


#: CloudWatch namespace of the ``UnhealthyNode`` metric the bootstrap puts on a failed check.
METRIC_NAMESPACE = "mlinfra/GpuHealth"


def render_gpu_node_script(
    *,
    expected_gpus_by_type: Mapping[str, int] | None = None,
    profiles_by_type: Mapping[str, Mapping[str, object]] | None = None,
    lustre_dns_name: str = "",
    lustre_mount_name: str = "",
    lustre_mount_point: str = "/fsx",
    efa_enabled: bool = True,
    min_driver: str = "",
    on_failure: OnUnhealthy | str = OnUnhealthy.SHUTDOWN,
    cluster_id: str = "",
    dcgm_level: int = 2,
) -> str:
    """The bash bootstrap of a GPU node with every placeholder filled.

    ``profiles_by_type``: per instance type, what the health check expects (``gpus``, ``efa`` devices,
    ``nvlink``, ``fabric_manager``; :func:`mlinfra.domain.instances.health_profile` builds them);
    ``expected_gpus_by_type`` is the short form with GPU counts only. ``cluster_id`` is the ``Cluster``
    dimension of the ``UnhealthyNode`` metric; ``dcgm_level`` the ``dcgmi diag -r`` level at boot (0: none)."""
    import base64
    import gzip
    import json

    on_failure = choice(OnUnhealthy, on_failure, "on_failure")
    if not lustre_mount_point.startswith("/"):
        raise ValueError(f"lustre_mount_point must be an absolute path, got: {lustre_mount_point!r}")
    if dcgm_level not in (0, 1, 2, 3, 4):
        raise ValueError(f"dcgm_level must be 0 (none) to 4, got: {dcgm_level!r}")
    if (profiles_by_type is None) == (expected_gpus_by_type is None):
        raise ValueError("pass either profiles_by_type or expected_gpus_by_type")
    profiles = dict(profiles_by_type) if profiles_by_type is not None else {
        t: {"gpus": n} for t, n in expected_gpus_by_type.items()}
    health = gzip.compress(_without_docstrings(script_text("gpu_health.py")).encode(), 9, mtime=0)
    values = {
        "LUSTRE_DNS": lustre_dns_name,
        "LUSTRE_MOUNT_NAME": lustre_mount_name,
        "LUSTRE_MOUNT_POINT": lustre_mount_point,
        "PROFILES": json.dumps(profiles, sort_keys=True, separators=(",", ":")),
        "MIN_DRIVER": min_driver,
        "EFA_ENABLED": "true" if efa_enabled else "false",
        "ON_FAILURE": on_failure.value,
        "METRIC_NAMESPACE": METRIC_NAMESPACE,
        "CLUSTER_ID": cluster_id,
        "DCGM_LEVEL": str(dcgm_level),
        "GPU_HEALTH_PY_GZ_B64": base64.b64encode(health).decode(),
    }
    text = script_text("gpu_node.sh")
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text
