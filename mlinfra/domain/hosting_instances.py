"""SageMaker hosting instance families: which exist, which carry GPUs or Neuron devices, which have local
NVMe instance storage. Pure Python (no CDK import) so the CLI and handlers can use it.

Sources (checked 2026-11): the SageMaker pricing page's real-time inference instance list, EC2
DescribeInstanceTypes (``InstanceStorageSupported``, ``GpuInfo``) and the CreateEndpointConfig reference,
which says ``KmsKeyId`` must not be set when a variant uses an instance type with local storage (those volumes
are encrypted by a hardware module on the instance) and that ``VolumeSizeInGB`` applies only to EBS-backed types.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["HostingFamily", "HOSTING_FAMILIES", "parse_instance_type", "family_of", "accepts_volume_kms_key"]


@dataclasses.dataclass(frozen=True)
class HostingFamily:
    name: str
    #: "cpu", "gpu" (NVIDIA) or "neuron" (Inferentia/Trainium).
    accelerator: str = "cpu"
    #: True when the type has local NVMe instance storage (no KMS volume key, no VolumeSizeInGB).
    local_storage: bool = False


def _fams(names: str, **kw) -> dict[str, HostingFamily]:
    return {n: HostingFamily(n, **kw) for n in names.split()}


#: Families SageMaker real-time / async hosting offers.
HOSTING_FAMILIES: dict[str, HostingFamily] = {
    **_fams("t2 t3 m4 m5 m6i m7i m6g m7g c4 c5 c5n c6i c7i c6g c7g r5 r6i r7i r6g r7g r8g"),
    **_fams("m5d m6id m6gd c5d c6id c6gd r5d r6id r6gd", local_storage=True),
    **_fams("p3", accelerator="gpu"),  # legacy, EBS-only
    **_fams("g4dn g5 g6 g6e p3dn p4d p4de p5 p5e p5en", accelerator="gpu", local_storage=True),
    **_fams("inf1 inf2", accelerator="neuron"),
    **_fams("trn1 trn1n", accelerator="neuron", local_storage=True),
}

_TYPE_RE = re.compile(r"^ml\.([a-z0-9]+)\.([a-z0-9]+)$")


def parse_instance_type(instance_type: str, prop: str = "instance_type") -> tuple[str, str]:
    """``ml.g5.xlarge`` -> ``("g5", "xlarge")``; a ValueError naming ``prop`` for anything else."""
    m = _TYPE_RE.fullmatch(instance_type or "")
    if not m:
        raise ValueError(
            f"{prop} must be a SageMaker instance type such as 'ml.m5.large' (starting with 'ml.'), got: {instance_type!r}"
        )
    family, size = m.groups()
    if family not in HOSTING_FAMILIES:
        raise ValueError(
            f"{prop} has an unknown SageMaker hosting instance family {family!r}; known: {sorted(HOSTING_FAMILIES)}, "
            f"got: {instance_type!r}"
        )
    return family, size


def family_of(instance_type: str, prop: str = "instance_type") -> HostingFamily:
    return HOSTING_FAMILIES[parse_instance_type(instance_type, prop)[0]]


def accepts_volume_kms_key(instance_type: str, prop: str = "instance_type") -> bool:
    """Whether a SageMaker request for ``instance_type`` may carry a volume KMS key (``VolumeKmsKeyId`` of
    training, processing and transform jobs, ``KmsKeyId`` of an endpoint config): not on types with local NVMe
    instance storage (service rule ``sagemaker.no-volume-kms-with-instance-storage``). Output keys are unaffected."""
    return not family_of(instance_type, prop).local_storage

