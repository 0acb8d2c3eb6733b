"""Cost per inference: the published worked example, instance counts, validation."""

from __future__ import annotations

import pytest

from mlinfra.domain.inference_cost import cost_per_million, estimate, instances_needed


def test_worked_example_0115_per_hour_at_329_per_minute():
    # $0.115/h / (329 inv/min x 60) x 1e6 = $5.826 per million inferences
    assert round(cost_per_million(0.115, 329), 3) == 5.826


def test_linear_in_price_and_inverse_in_throughput():
    assert cost_per_million(0.23, 329) == pytest.approx(2 * cost_per_million(0.115, 329))
    assert cost_per_million(0.115, 658) == pytest.approx(cost_per_million(0.115, 329) / 2)
    assert cost_per_million(0.0, 10) == 0.0


def test_instances_needed_with_headroom():
    assert instances_needed(1000, 329, headroom=0.7) == 5  # 1000 / 230.3 = 4.34 -> 5
    assert instances_needed(0, 329) == 1
    assert instances_needed(329, 329, headroom=1.0) == 1


def test_estimate_gives_scaling_target_and_monthly_cost():
    e = estimate(0.115, 329, peak_invocations_per_minute=1000, headroom=0.7)
    assert e.instances == 5
    assert e.monthly_cost == round(5 * 0.115 * 730, 2)
    assert e.target_invocations_per_instance == 230.3
    assert round(e.cost_per_million, 3) == 5.826


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: cost_per_million(0.115, 0), "max_invocations_per_minute must be a finite number > 0, got: 0"),
        (lambda: cost_per_million(-1, 329), "cost_per_hour must be a finite number >= 0, got: -1"),
        (lambda: cost_per_million(float("nan"), 329), "cost_per_hour"),
        (lambda: instances_needed(10, 329, headroom=0), r"headroom must be in \(0, 1\]"),
        (lambda: instances_needed(-1, 329), "peak_invocations_per_minute must be >= 0"),
    ],
)
def test_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
