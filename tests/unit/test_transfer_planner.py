"""Transfer planner: worked examples, unit parsing (ambiguous units rejected), CLI, properties."""

from __future__ import annotations

import argparse
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlinfra.domain import transfer_planner as tp


def test_worked_example_40tib_over_1gbps_fits_two_weeks():
    plan = tp.plan_transfer("40TiB", "1Gbps", utilization=0.8, deadline="14d")
    # 40 x 2^40 B x 8 / (0.8 x 10^9 b/s) = 439,804.65 s = 5.09 days
    assert plan.days_online == pytest.approx(5.0903, abs=1e-3)
    assert plan.meets_deadline and plan.method == "datasync"
    assert plan.datasync_bytes_per_second == 100_000_000  # 0.8 Gbps in bytes/s
    assert plan.snowball_edge_devices_existing_customers is None


def test_worked_example_500tib_needs_physical_transfer():
    plan = tp.plan_transfer("500TiB", "1Gbps", utilization=0.8, deadline="14d")
    assert plan.days_online == pytest.approx(63.63, abs=0.01)
    assert not plan.meets_deadline
    assert plan.method == "data-transfer-terminal"  # FACTS.md: Snowball Edge closed to new customers
    assert plan.snowball_edge_devices_existing_customers == 3  # 549.76 TB / 210 TB
    assert plan.required_bits_per_second == pytest.approx(4.545e9, rel=1e-3)
    assert plan.datasync_bytes_per_second is None
    assert any("existing" in n.lower() and "2025-11-07" in n for n in plan.notes)
    assert not any("snowmobile" in n.lower() or "snowcone" in n.lower() for n in plan.notes)


def test_tb_and_tib_differ():
    assert tp.parse_size("1TB") == 10**12
    assert tp.parse_size("1TiB") == 2**40
    assert tp.parse_size("1.5 GB") == 1_500_000_000


def test_mbps_and_mb_per_second_differ():
    assert tp.parse_rate("100Mbps") == 100e6
    assert tp.parse_rate("100MB/s") == 800e6
    assert tp.parse_rate("1Gbit/s") == 1e9


@pytest.mark.parametrize("bad", ["40T", "1G", "40tb", "40Tb", "40", "TiB", "-1TB", "40 terabytes", ""])
def test_ambiguous_sizes_rejected(bad):
    with pytest.raises(ValueError, match="size"):
        tp.parse_size(bad)


@pytest.mark.parametrize("bad", ["1G", "1GB", "1GBps", "1mbps", "1", "0Gbps", "fast"])
def test_ambiguous_rates_rejected(bad):
    with pytest.raises(ValueError, match="link"):
        tp.parse_rate(bad)


@pytest.mark.parametrize("bad", ["14", "14 days", "2m", "0d"])
def test_bad_deadlines_rejected(bad):
    with pytest.raises(ValueError, match="deadline"):
        tp.parse_duration(bad)


@pytest.mark.parametrize("u", [0, -0.1, 1.5])
def test_bad_utilization_rejected(u):
    with pytest.raises(ValueError, match="utilization"):
        tp.plan_transfer("1TB", "1Gbps", utilization=u)


def test_transfer_acceleration_for_long_haul_internet():
    plan = tp.plan_transfer("500GB", "500Mbps", deadline="7d", public_internet=True, long_distance=True)
    assert plan.method == "s3-transfer-acceleration"
    assert any("landing_transfer_acceleration" in n for n in plan.notes)


def test_fast_links_are_split_across_datasync_tasks():
    plan = tp.plan_transfer("1PB", "100Gbps", utilization=0.5, deadline="14d")
    assert plan.method == "datasync" and any("5 tasks" in n for n in plan.notes)


def test_no_deadline_always_online():
    assert tp.plan_transfer("10PB", "10Mbps").method == "datasync"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    tp.register_cli(sub)
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_json(capsys):
    assert run_cli("plan-transfer", "--size", "40TiB", "--link", "1Gbps", "--utilization", "0.8", "--deadline", "14d", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "datasync" and out["datasync_bytes_per_second"] == 100_000_000


def test_cli_text_and_error(capsys):
    assert run_cli("plan-transfer", "--size", "500TiB", "--link", "1Gbps", "--deadline", "14d") == 0
    text = capsys.readouterr().out
    assert "data-transfer-terminal" in text and "NOT met" in text
    with pytest.raises(SystemExit) as exit_:  # a usage error, named by argparse (issue 19: bounded argument types)
        run_cli("plan-transfer", "--size", "40T", "--link", "1Gbps")
    assert exit_.value.code == 2 and "argument --size" in (err := capsys.readouterr().err) and "explicit unit" in err



@pytest.mark.parametrize("seconds,text", [
    (0.13 * 86400, "3.12 hours"),  # issue 17: not "0.13 days"
    (12 * 3600, "12 hours"),
    (3600, "1 hour"),
    (450, "7.5 minutes"),
    (59.4, "59.4 seconds"),
    (1e-13, "under 0.001 seconds"),
    (86400, "1 day"),
    (36 * 3600, "1.5 days"),
    (439_804.65, "5.09 days"),
    (1234.4 * 86400, "1,234 days"),
])
def test_durations_print_in_the_unit_that_fits(seconds, text):
    assert tp.format_duration(seconds) == text


def test_a_short_transfer_and_deadline_print_in_hours_and_minutes(capsys):
    assert run_cli("plan-transfer", "--size", "1TB", "--link", "10Gbps", "--deadline", "12h") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "online:        16.7 minutes" in lines
    assert "deadline:      12 hours -> met" in lines
    plan = tp.plan_transfer("10TB", "1Gbps", deadline="12h")
    assert "The link needs 1.16 days online, over the deadline of 12 hours" in plan.notes[0]


sizes = st.integers(min_value=1, max_value=10**17)
rates = st.floats(min_value=1e3, max_value=1e12, allow_nan=False)
utils = st.floats(min_value=0.01, max_value=1.0)


@settings(max_examples=60, deadline=None)
@given(sizes, rates, utils, st.floats(min_value=3600, max_value=1e8))
def test_physical_iff_deadline_missed(size, rate, util, deadline):
    plan = tp.plan_transfer(size, rate, utilization=util, deadline=deadline)
    assert plan.meets_deadline == (plan.days_online * 86400 <= deadline * (1 + 1e-12))
    assert (plan.method == "data-transfer-terminal") == (not plan.meets_deadline)
    if plan.meets_deadline:
        assert plan.datasync_bytes_per_second <= max(tp.DATASYNC_MIN_BYTES_PER_SECOND, rate / 8)
    else:
        assert plan.snowball_edge_devices_existing_customers * tp.SNOWBALL_EDGE_USABLE_BYTES >= size


@settings(max_examples=60, deadline=None)
@given(sizes, sizes, rates, utils)
def test_days_monotone_in_size(a, b, rate, util):
    small, big = sorted((a, b))
    assert tp.plan_transfer(small, rate, utilization=util).days_online <= tp.plan_transfer(big, rate, utilization=util).days_online


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(sorted(tp.SIZE_UNITS)))
def test_size_round_trip(n, unit):
    assert tp.parse_size(f"{n}{unit}") == n * tp.SIZE_UNITS[unit]
