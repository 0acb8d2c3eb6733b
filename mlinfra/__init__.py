"""mlinfra: AWS CDK constructs for deep-learning infrastructure.

The public constructs import from the package directly::

    from mlinfra import DataLake, Network, TeamEnvironment

They load lazily (PEP 562), so ``import mlinfra`` (and the ``mlinfra`` command) does not start jsii.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> module that defines it. Modules written by other capabilities may be absent from an
#: installation; asking for their names then raises an AttributeError that says which module is missing.
_EXPORTS: dict[str, str] = {
    # the app and its configuration
    "create_app": "mlinfra.app",
    "build_platform": "mlinfra.stacks.platform",
    "Platform": "mlinfra.stacks.platform",
    "PlatformConfig": "mlinfra.config",
    "ConfigError": "mlinfra.config",
    "load_config": "mlinfra.config",
    "load_config_file": "mlinfra.config",
    "PlatformStack": "mlinfra.stacks.base",
    # constructs
    "Network": "mlinfra.constructs.network",
    "DataLake": "mlinfra.constructs.data_lake",
    "ImportedDataLake": "mlinfra.constructs.data_lake",
    "IDataLake": "mlinfra.constructs.data_lake",
    "LakeBase": "mlinfra.constructs.data_lake",
    "Lifecycle": "mlinfra.domain.lake",
    "Zone": "mlinfra.domain.lake",
    "LakeEncryption": "mlinfra.constructs.data_lake",
    "HandlerFunction": "mlinfra.constructs.lambda_function",
    "EndpointTarget": "mlinfra.constructs.endpoint_target",
    "DataSyncTask": "mlinfra.constructs.datasync",
    "DataSyncEndpoint": "mlinfra.constructs.datasync",
    "SftpServer": "mlinfra.constructs.transfer",
    "RawDeliveryStream": "mlinfra.constructs.firehose",
    "LustreCache": "mlinfra.constructs.lustre_cache",
    "ILustreCache": "mlinfra.constructs.lustre_cache",
    "ImportedLustreCache": "mlinfra.constructs.lustre_cache",
    "BatchTransform": "mlinfra.constructs.batch_transform",
    "BatchTrainingCluster": "mlinfra.constructs.training_cluster",
    "SlurmTrainingCluster": "mlinfra.constructs.training_cluster",
    "GpuTrainingClusterBase": "mlinfra.constructs.training_cluster",
    "ParallelClusterProvider": "mlinfra.constructs.training_cluster",
    "HyperPodCluster": "mlinfra.constructs.hyperpod",
    "HyperPodInstanceGroup": "mlinfra.constructs.hyperpod",
    "HyperPodLifecycle": "mlinfra.constructs.hyperpod",
    "Endpoint": "mlinfra.constructs.endpoint",
    "RetrainPipeline": "mlinfra.constructs.retrain_pipeline",
    "DriftMonitor": "mlinfra.constructs.drift_monitor",
    "BaselineHook": "mlinfra.constructs.drift_monitor",
    "retrain_on_drift": "mlinfra.constructs.drift_monitor",
    "TeamEnvironment": "mlinfra.constructs.team_environment",
    "TeamPortfolio": "mlinfra.constructs.team_environment",
    "GithubOidcDeployRole": "mlinfra.constructs.github_oidc",
    # stacks
    "NetworkStack": "mlinfra.stacks.network",
    "DataLakeStack": "mlinfra.stacks.data_lake",
    "IngestionStack": "mlinfra.stacks.ingestion",
    "TrainingStack": "mlinfra.stacks.training",
    "ServingStack": "mlinfra.stacks.serving",
    "MonitoringStack": "mlinfra.stacks.monitoring",
    "DeliveryPipelineStack": "mlinfra.stacks.delivery",
    "TeamStack": "mlinfra.stacks.teams",
    "VendingStack": "mlinfra.stacks.teams",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mlinfra' has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise AttributeError(
            f"mlinfra.{name} is not available: its module {module_name} is not part of this installation"
        ) from None
    try:
        value = getattr(module, name)
    except AttributeError:
        raise AttributeError(f"mlinfra.{name} is not available: {module_name} does not define it") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
