"""SageMaker HyperPod lifecycle scripts, shipped in the wheel and uploaded by :class:`mlinfra.HyperPodCluster`.

``on_init_complete.sh`` is the entry point HyperPod runs on every node once its own software is configured
(the lifecycle configuration's ``OnInitComplete``, "Extended" mode: HyperPod sets up Slurm and mounts FSx
first). It asks ``lifecycle.py`` (Python 3 standard
library only: it runs on the node's system Python) which steps this node's group needs, then runs
``steps/<step>.sh`` for each. The construct writes ``lifecycle-config.json`` beside the scripts (the Lustre
file system's DNS and mount names, the groups' roles, the exporter images). Every step is idempotent: a node
that HyperPod replaces or reboots runs them again safely.
"""

from importlib import resources
from pathlib import Path


def scripts_dir() -> Path:
    """The folder holding ``on_init_complete.sh``, ``lifecycle.py`` and ``steps/`` (uploaded as is)."""
    return Path(str(resources.files(__name__)))
