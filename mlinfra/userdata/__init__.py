"""User data of GPU training nodes (package data): the bootstrap script and the GPU health check.

``gpu_node.sh`` is a template with ``@@NAME@@`` placeholders; :func:`render_gpu_node_script` fills them
(values may be CDK tokens: the result is then a token string that CloudFormation joins). ``gpu_health.py`` is
copied into the script verbatim and runs on the node with the AMI's python3.
"""

from __future__ import annotations

from importlib import resources
from typing import Mapping

__all__ = ["render_gpu_node_script", "render_node_install_script", "script_text", "OnFailure", "EFA_INSTALLER_VERSION"]

#: The EFA installer release the install part downloads (``latest``, or a pinned release such as ``1.43.2``).
EFA_INSTALLER_VERSION = "latest"


class OnFailure:
    """What a node does when its checks fail."""

    #: Power off; the launch template's shutdown behaviour terminates it and the scheduler replaces it.
    SHUTDOWN = "shutdown"
    #: Only record ``/var/lib/mlinfra/unhealthy`` and log (for debugging a node).
    REPORT = "report"


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


def render_gpu_node_script(
    *,
    expected_gpus_by_type: Mapping[str, int],
    lustre_dns_name: str = "",
    lustre_mount_name: str = "",
    lustre_mount_point: str = "/fsx",
    efa_enabled: bool = True,
    min_driver: str = "",
    on_failure: str = OnFailure.SHUTDOWN,
) -> str:
    """The bash bootstrap of a GPU node with every placeholder filled."""
    if on_failure not in (OnFailure.SHUTDOWN, OnFailure.REPORT):
        raise ValueError(f"on_failure must be 'shutdown' or 'report', got: {on_failure!r}")
    if not lustre_mount_point.startswith("/"):
        raise ValueError(f"lustre_mount_point must be an absolute path, got: {lustre_mount_point!r}")
    values = {
        "LUSTRE_DNS": lustre_dns_name,
        "LUSTRE_MOUNT_NAME": lustre_mount_name,
        "LUSTRE_MOUNT_POINT": lustre_mount_point,
        "EXPECTED_GPUS_BY_TYPE": ",".join(f"{t}={n}" for t, n in sorted(expected_gpus_by_type.items())),
        "MIN_DRIVER": min_driver,
        "EFA_ENABLED": "true" if efa_enabled else "false",
        "ON_FAILURE": on_failure,
        "GPU_HEALTH_PY": script_text("gpu_health.py").rstrip("\n"),
    }
    text = script_text("gpu_node.sh")
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text
