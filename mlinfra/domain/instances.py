"""Accelerator (GPU and Trainium) EC2 instance types: counts, EFA and network cards, and validation.

Pure Python (no aws_cdk import), so the CLI, handlers and constructs share one table.

The table is ``mlinfra/data/accelerator-instances.csv`` (package data). Source: EC2 DescribeInstanceTypes
(``GpuInfo``/``NeuronInfo``, ``VCpuInfo``, ``MemoryInfo``, ``NetworkInfo.EfaInfo.MaximumEfaInterfaces`` and
``NetworkInfo.MaximumNetworkCards``, ``InstanceStorageInfo.TotalSizeInGB`` as ``instance_store_gb``, the
column added to the shared table's columns), as collected in the project's shared table (2026, see FACTS.md). Types
absent from the table (retired ``dl1``, legacy ``p3`` except ``p3dn``, CPU types) are rejected with a clear
error rather than guessed.

EFA interface layout (:func:`efa_interface_layout`) follows current EC2 guidance: the primary interface on
network card 0 / device 0 carries ENA (and EFA, interface type ``efa``, unless the type has more network
cards than EFA interfaces, as on p6-b300 whose card 0 is ENA-only), every further network card gets one
``efa-only`` interface at device index 1. One EFA interface per network card.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import re
from importlib import resources

__all__ = [
    "AcceleratorInstance",
    "InstanceTypeError",
    "all_instance_types",
    "get",
    "gpu_count",
    "max_efa_interfaces",
    "network_cards",
    "efa_interface_layout",
    "validate_ec2_instance_type",
    "validate_sagemaker_instance_type",
    "has_instance_store",
    "efa_rdma_capable",
    "health_profile",
    "SAGEMAKER_PREFIX",
    "EFA_RDMA_FAMILIES",
    "ECS_GPU_AMI_SSM_PARAMETER",
]

SAGEMAKER_PREFIX = "ml."

#: ECS GPU-optimized Amazon Linux 2023 image (has ecs-init, which Batch multi-node jobs need; rule
#: batch.mnp-ecs-agent-image): the default Batch node image.
ECS_GPU_AMI_SSM_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
_TYPE_RE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")

#: Families that exist in EC2 but must not be used for new clusters, with the reason (FACTS.md).
RETIRED_FAMILIES: dict[str, str] = {
    "dl1": "dl1 (Habana Gaudi) is retired",
    "p2": "p2 is retired",
    "p3": "p3 is legacy; use p4d, p5 or newer (p3dn.24xlarge is still listed)",
}

#: Families whose EFA devices support RDMA (read/write) - AWS EFA docs "Supported instance types" (RDMA column)
#: and libfabric's FI_EFA_USE_DEVICE_RDMA: p4d/p4de, p5*, p6*, trn1/trn1n/trn2. Older EFA types (g5, g6, g6e,
#: p3dn) have EFA without RDMA read/write: forcing FI_EFA_USE_DEVICE_RDMA=1 there aborts libfabric.
EFA_RDMA_FAMILIES = frozenset({"p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300", "trn1", "trn1n", "trn2"})

#: Accelerator kinds whose health is checked with ``nvidia-smi``.
NVIDIA_ACCELERATORS = frozenset({"a10g", "l4", "l40s", "v100", "a100", "h100", "h200", "b200", "b300"})


class InstanceTypeError(ValueError):
    """An instance type that is unknown, retired, or cannot do what was asked (EFA, GPU count...)."""


@dataclasses.dataclass(frozen=True)
class AcceleratorInstance:
    """One row of the accelerator table."""

    instance_type: str
    vcpu: int
    host_mem_mib: int
    #: GPUs (or Trainium chips) per instance.
    accelerators: int
    #: Accelerator model, lower case (``a100``, ``h100``, ``trainium``...).
    accelerator: str
    #: Memory per accelerator in MiB (None for Trainium in the table).
    accel_mem_mib_each: int | None
    #: NeuronCores per instance (Trainium only).
    neuron_cores: int | None
    net_baseline_mbps: int
    #: Maximum EFA interfaces (0: no EFA).
    max_efa_interfaces: int
    network_cards: int
    #: Local NVMe instance storage in GB (``InstanceStorageInfo.TotalSizeInGB``; 0: EBS only).
    instance_store_gb: int = 0

    @property
    def family(self) -> str:
        return self.instance_type.split(".", 1)[0]

    @property
    def efa_supported(self) -> bool:
        return self.max_efa_interfaces > 0

    @property
    def is_nvidia_gpu(self) -> bool:
        return self.accelerator in NVIDIA_ACCELERATORS


def _int_or_none(value: str) -> int | None:
    return int(value) if value.strip() else None


@functools.cache
def _table() -> dict[str, AcceleratorInstance]:
    text = resources.files("mlinfra.data").joinpath("accelerator-instances.csv").read_text()
    rows: dict[str, AcceleratorInstance] = {}
    for row in csv.DictReader(text.splitlines()):
        rows[row["instance_type"]] = AcceleratorInstance(
            instance_type=row["instance_type"],
            vcpu=int(row["vcpu"]),
            host_mem_mib=int(row["host_mem_mib"]),
            accelerators=int(row["accelerators"]),
            accelerator=row["accelerator"],
            accel_mem_mib_each=_int_or_none(row["accel_mem_mib_each"]),
            neuron_cores=_int_or_none(row["neuron_cores"]),
            net_baseline_mbps=int(row["net_baseline_mbps"]),
            max_efa_interfaces=int(row["max_efa_interfaces"]),
            network_cards=int(row["network_cards"]),
            instance_store_gb=int(row.get("instance_store_gb") or 0),
        )
    return rows


def all_instance_types() -> list[str]:
    """Every instance type of the table, in table order."""
    return list(_table())


def get(instance_type: str) -> AcceleratorInstance:
    """The table row of an EC2 instance type (``p4d.24xlarge``); a SageMaker ``ml.`` type is refused here,
    use :func:`validate_sagemaker_instance_type`. Raises :class:`InstanceTypeError` for unknown types."""
    row = _table().get(instance_type)
    if row is not None:
        return row
    if instance_type.startswith(SAGEMAKER_PREFIX):
        raise InstanceTypeError(
            f"instance_type {instance_type!r} is a SageMaker type; EC2 types have no 'ml.' prefix "
            f"(e.g. {instance_type[len(SAGEMAKER_PREFIX):]!r})"
        )
    family = instance_type.split(".", 1)[0]
    if family in RETIRED_FAMILIES and instance_type != "p3dn.24xlarge":
        raise InstanceTypeError(f"instance_type {instance_type!r} is not allowed: {RETIRED_FAMILIES[family]}")
    families = sorted({r.family for r in _table().values()})
    raise InstanceTypeError(
        f"instance_type must be a GPU or Trainium type of the accelerator table (families {families}), "
        f"got: {instance_type!r}"
    )


def gpu_count(instance_type: str) -> int:
    """GPUs (or Trainium chips) per instance."""
    return get(instance_type).accelerators


def max_efa_interfaces(instance_type: str) -> int:
    """Maximum EFA interfaces of the type (0 when it has no EFA)."""
    return get(instance_type).max_efa_interfaces


def network_cards(instance_type: str) -> int:
    return get(instance_type).network_cards


def has_instance_store(instance_type: str) -> bool:
    """Whether a type has local NVMe instance storage (service rule ``ec2.instance-store``).

    EC2 types (``p4d.24xlarge``) come from the accelerator table; SageMaker types (``ml.p4d.24xlarge``) from it
    when listed there, else from the SageMaker hosting table (:mod:`mlinfra.domain.hosting_instances`). Raises
    :class:`InstanceTypeError` for a type neither table knows."""
    name = instance_type[len(SAGEMAKER_PREFIX):] if instance_type.startswith(SAGEMAKER_PREFIX) else instance_type
    row = _table().get(name)
    if row is not None:
        return row.instance_store_gb > 0
    if instance_type.startswith(SAGEMAKER_PREFIX):
        from mlinfra.domain import hosting_instances

        try:
            return hosting_instances.family_of(instance_type).local_storage
        except ValueError as exc:
            raise InstanceTypeError(str(exc)) from None
    return get(instance_type).instance_store_gb > 0


#: Families whose GPUs are joined by NVLink (multi-GPU sizes) and those with NVSwitch, which need the NVIDIA
#: fabric manager (NVIDIA fabric manager guide; EC2 accelerated computing instance specifications).
NVLINK_FAMILIES = frozenset({"p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300"})
NVSWITCH_FAMILIES = frozenset({"p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300"})


def health_profile(instance_type: str, efa: bool) -> dict[str, object]:
    """What the GPU health check expects of a node of this type: GPUs, EFA devices (when EFA is attached: one
    per interface of the launch template, rule ``ec2.efa-interface-count``), NVLink, the fabric manager."""
    row = get(instance_type)
    multi = row.accelerators > 1
    profile: dict[str, object] = {"gpus": row.accelerators, "nvlink": multi and row.family in NVLINK_FAMILIES,
                                  "fabric_manager": multi and row.family in NVSWITCH_FAMILIES}
    if efa and row.efa_supported:
        profile["efa"] = row.max_efa_interfaces
    return profile


def efa_rdma_capable(instance_type: str) -> bool:
    """Whether the type's EFA devices do RDMA read/write (``EFA_RDMA_FAMILIES``)."""
    return get(instance_type).family in EFA_RDMA_FAMILIES


@dataclasses.dataclass(frozen=True)
class InterfaceSlot:
    """One network interface of a launch template: where it sits and what it carries."""

    network_card_index: int
    device_index: int
    #: ``efa`` (ENA + EFA), ``efa-only`` or ``interface`` (ENA only).
    interface_type: str


def efa_interface_layout(instance_type: str, efa_interfaces: int | None = None) -> list[InterfaceSlot]:
    """The network interfaces of an EFA launch template for ``instance_type``.

    ``efa_interfaces``: how many EFA interfaces to attach (default: the type's maximum). Card 0 / device 0 is
    the primary interface: ``efa`` when it may carry EFA, else ENA-only (``interface``) when the type has more
    network cards than EFA interfaces (p6-b300). Each further card gets one ``efa-only`` interface at device 1.
    """
    row = validate_ec2_instance_type(instance_type, require_efa=True, prop="instance_type")
    maximum = row.max_efa_interfaces
    wanted = maximum if efa_interfaces is None else efa_interfaces
    if not 1 <= wanted <= maximum:
        raise InstanceTypeError(
            f"efa_interfaces must be between 1 and {maximum} for {instance_type}, got: {wanted}"
        )
    primary_is_ena_only = row.network_cards > row.max_efa_interfaces
    slots: list[InterfaceSlot] = []
    if primary_is_ena_only:
        slots.append(InterfaceSlot(0, 0, "interface"))
        slots.extend(InterfaceSlot(card, 1, "efa-only") for card in range(1, wanted + 1))
    else:
        slots.append(InterfaceSlot(0, 0, "efa"))
        slots.extend(InterfaceSlot(card, 1, "efa-only") for card in range(1, wanted))
    return slots


def validate_ec2_instance_type(
    instance_type: str,
    *,
    require_efa: bool = False,
    require_nvidia: bool = False,
    min_accelerators: int | None = None,
    prop: str = "instance_type",
) -> AcceleratorInstance:
    """Check an EC2 type against the table and what is asked of it; returns its row.

    Raises :class:`InstanceTypeError` naming ``prop``, the type and what is allowed: unknown or retired
    types, EFA asked of a type without EFA, an NVIDIA GPU asked of a Trainium type, too few accelerators.
    """
    try:
        row = get(instance_type)
    except InstanceTypeError as exc:
        raise InstanceTypeError(str(exc).replace("instance_type", prop, 1)) from None
    if require_efa and not row.efa_supported:
        efa_types = [r.instance_type for r in _table().values() if r.family == row.family and r.efa_supported]
        raise InstanceTypeError(
            f"{prop} {instance_type!r} has no EFA (EFA was asked for); EFA types of the {row.family} family: "
            f"{efa_types or 'none'}"
        )
    if require_nvidia and not row.is_nvidia_gpu:
        raise InstanceTypeError(
            f"{prop} {instance_type!r} has {row.accelerator} accelerators, not NVIDIA GPUs (the GPU health check "
            f"uses nvidia-smi)"
        )
    if min_accelerators is not None and row.accelerators < min_accelerators:
        raise InstanceTypeError(
            f"{prop} {instance_type!r} has {row.accelerators} accelerator(s), at least {min_accelerators} required"
        )
    return row


def validate_sagemaker_instance_type(
    instance_type: str,
    *,
    require_efa: bool = False,
    require_nvidia: bool = False,
    require_accelerator: bool = True,
    prop: str = "instance_type",
) -> AcceleratorInstance | None:
    """Check a SageMaker training type (``ml.p4d.24xlarge``): the ``ml.`` prefix (``m1.`` and bare EC2 names
    are refused), then the EC2 rules of :func:`validate_ec2_instance_type` on the part after the prefix.

    With ``require_accelerator=False`` a CPU type (``ml.m5.xlarge``) passes on its shape alone and None is
    returned (the table lists accelerator types only)."""
    if not isinstance(instance_type, str) or not instance_type.startswith(SAGEMAKER_PREFIX):
        hint = ""
        if isinstance(instance_type, str) and instance_type.startswith("m1."):
            hint = " ('m1.' looks like a typo of 'ml.')"
        elif isinstance(instance_type, str) and instance_type in _table():
            hint = f" (did you mean 'ml.{instance_type}'?)"
        raise InstanceTypeError(f"{prop} must be a SageMaker type starting with 'ml.', got: {instance_type!r}{hint}")
    ec2_type = instance_type[len(SAGEMAKER_PREFIX):]
    if not require_accelerator and not (require_efa or require_nvidia) and ec2_type not in _table():
        if not _TYPE_RE.fullmatch(ec2_type):
            raise InstanceTypeError(f"{prop} must look like 'ml.<family>.<size>', got: {instance_type!r}")
        return None
    return validate_ec2_instance_type(
        instance_type[len(SAGEMAKER_PREFIX):], require_efa=require_efa, require_nvidia=require_nvidia, prop=prop
    )
