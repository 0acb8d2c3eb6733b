"""Cost per inference of an instance-backed SageMaker endpoint. Pure Python (no CDK import).

    cost per 1M inferences = cost per hour / (max invocations per minute x 60) x 1,000,000

``max invocations per minute`` is the sustained throughput of ONE instance at the latency target (what a
SageMaker Inference Recommender load test reports as ``MaxInvocations``). Worked example from a published
recommendation: ml.c5.large-class at $0.115/h serving 329 invocations/min costs
0.115 / (329 x 60) x 1e6 = $5.826 per million inferences. Prices vary by region and over time: take them as
input, never as constants.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["cost_per_million", "CostEstimate", "estimate", "instances_needed"]


def cost_per_million(cost_per_hour: float, max_invocations_per_minute: float) -> float:
    """USD per one million inferences on one instance running at its maximum sustained throughput."""
    if not cost_per_hour >= 0 or math.isinf(cost_per_hour):
        raise ValueError(f"cost_per_hour must be a finite number >= 0, got: {cost_per_hour}")
    if not max_invocations_per_minute > 0 or math.isinf(max_invocations_per_minute):
        raise ValueError(f"max_invocations_per_minute must be a finite number > 0, got: {max_invocations_per_minute}")
    return cost_per_hour / (max_invocations_per_minute * 60.0) * 1_000_000.0


def instances_needed(peak_invocations_per_minute: float, max_invocations_per_minute: float, headroom: float = 0.7) -> int:
    """Instances to serve a peak while each runs at ``headroom`` (0-1] of its maximum throughput."""
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1], got: {headroom}")
    if peak_invocations_per_minute < 0:
        raise ValueError(f"peak_invocations_per_minute must be >= 0, got: {peak_invocations_per_minute}")
    if not max_invocations_per_minute > 0:
        raise ValueError(f"max_invocations_per_minute must be > 0, got: {max_invocations_per_minute}")
    return max(1, math.ceil(peak_invocations_per_minute / (max_invocations_per_minute * headroom)))


@dataclasses.dataclass(frozen=True)
class CostEstimate:
    cost_per_million: float
    instances: int
    monthly_cost: float
    #: The target-tracking value for SageMakerVariantInvocationsPerInstance (invocations per instance per minute).
    target_invocations_per_instance: float


def estimate(
    cost_per_hour: float, max_invocations_per_minute: float, peak_invocations_per_minute: float, headroom: float = 0.7
) -> CostEstimate:
    """Cost per million, instance count at peak, monthly cost (730 h) and the scaling target to configure."""
    n = instances_needed(peak_invocations_per_minute, max_invocations_per_minute, headroom)
    return CostEstimate(
        cost_per_million=cost_per_million(cost_per_hour, max_invocations_per_minute),
        instances=n,
        monthly_cost=round(n * cost_per_hour * 730, 2),
        target_invocations_per_instance=round(max_invocations_per_minute * headroom, 2),
    )
