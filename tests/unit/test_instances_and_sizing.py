"""Pure helpers of the training capability: the accelerator table and the Lustre sizing (no CDK)."""

from __future__ import annotations

import argparse
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlinfra.domain import instances
from mlinfra.domain import lustre_sizing as ls
from mlinfra.domain.instances import InstanceTypeError

# ----------------------------------------------------------------------------------------------- instances


def test_table_loads_from_package_data():
    types = instances.all_instance_types()
    assert len(types) == 37
    assert "p5.48xlarge" in types and "trn2.48xlarge" in types


@pytest.mark.parametrize(
    ("itype", "gpus", "efa", "cards"),
    [("p4d.24xlarge", 8, 4, 4), ("p5.48xlarge", 8, 32, 32), ("p5en.48xlarge", 8, 16, 16),
     ("p6-b200.48xlarge", 8, 8, 8), ("g5.xlarge", 1, 0, 1), ("trn1n.32xlarge", 16, 16, 16),
     ("p6-b300.48xlarge", 8, 16, 17)],
)
def test_lookups(itype, gpus, efa, cards):
    assert instances.gpu_count(itype) == gpus
    assert instances.max_efa_interfaces(itype) == efa
    assert instances.network_cards(itype) == cards


def test_efa_layout_p4d_primary_efa_then_efa_only():
    slots = instances.efa_interface_layout("p4d.24xlarge")
    assert [(s.network_card_index, s.device_index, s.interface_type) for s in slots] == [
        (0, 0, "efa"), (1, 1, "efa-only"), (2, 1, "efa-only"), (3, 1, "efa-only")]


def test_efa_layout_p5_has_32_efa_interfaces():
    slots = instances.efa_interface_layout("p5.48xlarge")
    assert len(slots) == 32 and all(s.interface_type in ("efa", "efa-only") for s in slots)
    assert len({s.network_card_index for s in slots}) == 32


def test_efa_layout_p6_b300_card0_is_ena_only():
    slots = instances.efa_interface_layout("p6-b300.48xlarge")
    assert slots[0].interface_type == "interface" and slots[0].network_card_index == 0
    assert sum(s.interface_type == "efa-only" for s in slots) == 16


def test_efa_layout_single_card_type():
    assert [s.interface_type for s in instances.efa_interface_layout("g5.48xlarge")] == ["efa"]


def test_efa_layout_count_out_of_range():
    with pytest.raises(InstanceTypeError, match="efa_interfaces must be between 1 and 4 for p4d.24xlarge, got: 5"):
        instances.efa_interface_layout("p4d.24xlarge", 5)


def test_efa_on_type_without_efa_is_a_clear_error():
    with pytest.raises(InstanceTypeError, match=r"'g5.xlarge' has no EFA .*g5.8xlarge"):
        instances.validate_ec2_instance_type("g5.xlarge", require_efa=True)


@pytest.mark.parametrize(("itype", "match"), [
    ("dl1.24xlarge", "dl1 .* retired"),
    ("p3.16xlarge", "p3 is legacy"),
    ("m5.large", "must be a GPU or Trainium type"),
    ("ml.p4d.24xlarge", "is a SageMaker type"),
])
def test_unknown_or_retired_ec2_types(itype, match):
    with pytest.raises(InstanceTypeError, match=match):
        instances.validate_ec2_instance_type(itype)


def test_trainium_is_not_nvidia():
    with pytest.raises(InstanceTypeError, match="trainium accelerators, not NVIDIA"):
        instances.validate_ec2_instance_type("trn1.32xlarge", require_nvidia=True)


def test_min_accelerators():
    with pytest.raises(InstanceTypeError, match="at least 8 required"):
        instances.validate_ec2_instance_type("g5.12xlarge", min_accelerators=8)


def test_sagemaker_types():
    assert instances.validate_sagemaker_instance_type("ml.p4d.24xlarge", require_efa=True).accelerators == 8
    assert instances.validate_sagemaker_instance_type("ml.m5.xlarge", require_accelerator=False) is None
    with pytest.raises(InstanceTypeError, match="'m1.' looks like a typo"):
        instances.validate_sagemaker_instance_type("m1.p4d.24xlarge")
    with pytest.raises(InstanceTypeError, match="did you mean 'ml.p4d.24xlarge'"):
        instances.validate_sagemaker_instance_type("p4d.24xlarge")
    with pytest.raises(InstanceTypeError, match="must look like"):
        instances.validate_sagemaker_instance_type("ml.bad", require_accelerator=False)
    with pytest.raises(InstanceTypeError, match="has no EFA"):
        instances.validate_sagemaker_instance_type("ml.g5.2xlarge", require_efa=True)


# ----------------------------------------------------------------------------------------------- sizing


def test_worked_example_from_the_docstring():
    plan = ls.plan_cache(64, 200, 10 * 1024)
    assert (plan.deployment_type, plan.storage_capacity_gib, plan.per_unit_storage_throughput) == (
        "PERSISTENT_2", 14400, 1000)
    assert plan.demand_mbps == 12800
    assert plan.aggregate_throughput_mbps == pytest.approx(14062.5)
    assert plan.monthly_storage_cost_usd == pytest.approx(8640.0)


def test_small_job_is_capacity_bound_and_takes_the_cheapest_per_gib_option():
    # 8 GPUs x 25 MB/s = 200 MB/s; 1 TiB of data -> 1200 GiB is too small (1024/0.9 = 1138 fits: 1200).
    plan = ls.plan_cache(8, 25, 1024)
    assert (plan.deployment_type, plan.storage_capacity_gib) == ("SCRATCH_2", 1200)
    assert plan.aggregate_throughput_mbps == pytest.approx(1200 / 1024 * 200)


def test_durable_only():
    # 200 MB/s: 1200 GiB at 125 gives only 146 MB/s (2400 GiB x 0.145 = $348); 1200 GiB at 250 gives 293 MB/s
    # for 1200 x 0.210 = $252, the cheaper plan.
    plan = ls.plan_cache(8, 25, 1024, deployment_types=("PERSISTENT_2",))
    assert (plan.deployment_type, plan.storage_capacity_gib, plan.per_unit_storage_throughput) == (
        "PERSISTENT_2", 1200, 250)
    assert plan.monthly_storage_cost_usd == pytest.approx(252.0)


def test_large_dataset_low_demand_rounds_to_2400_multiples():
    plan = ls.plan_cache(1, 10, 50_000, deployment_types=("PERSISTENT_2",))
    # 50000 / 0.9 = 55556 GiB -> 24 x 2400 = 57600
    assert plan.storage_capacity_gib == 57600 and plan.per_unit_storage_throughput == 125


def test_price_table_is_an_input():
    cheap_1000 = ls.PriceTable(region="xx-test-1", as_of="2026-11-01", source="test", usd_per_gb_month={
        ("PERSISTENT_2", 125): 1.0, ("PERSISTENT_2", 1000): 0.01})
    plan = ls.plan_cache(8, 25, 1024, deployment_types=("PERSISTENT_2",), prices=cheap_1000)
    assert plan.per_unit_storage_throughput == 1000 and plan.prices_as_of == "2026-11-01"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"gpu_count": 0}, "gpu_count must be a positive integer, got: 0"),
    ({"per_gpu_read_mbps": 0}, "per_gpu_read_mbps must be > 0"),
    ({"dataset_gib": -1}, "dataset_gib must be >= 0"),
    ({"free_space_fraction": 1.0}, r"free_space_fraction must be in \[0, 1\)"),
    ({"deployment_types": ("SCRATCH_1",)}, "deployment_types must be a non-empty subset"),
])
def test_sizing_input_errors(kwargs, match):
    args = {"gpu_count": 8, "per_gpu_read_mbps": 100, "dataset_gib": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        ls.plan_cache(args.pop("gpu_count"), args.pop("per_gpu_read_mbps"), args.pop("dataset_gib"), **args)


def test_price_table_errors():
    with pytest.raises(ValueError, match="unknown option PERSISTENT_2 at 300"):
        ls.PriceTable.from_dict({"region": "r", "as_of": "d", "prices": [
            {"deployment_type": "PERSISTENT_2", "per_unit_throughput": 300, "usd_per_gb_month": 0.1}]})
    with pytest.raises(ValueError, match="prices must be"):
        ls.PriceTable.from_dict({"region": "r"})
    empty = ls.PriceTable(region="r", as_of="d", source="", usd_per_gb_month={("SCRATCH_2", 200): 0.1})
    with pytest.raises(ValueError, match="have no option of deployment_types"):
        ls.plan_cache(1, 1, 1, deployment_types=("PERSISTENT_2",), prices=empty)


def test_capacity_rules():
    assert ls.valid_capacity("PERSISTENT_2", 1200) and ls.valid_capacity("PERSISTENT_2", 4800)
    assert not ls.valid_capacity("PERSISTENT_2", 3600)
    assert ls.round_up_capacity("SCRATCH_2", 1201) == 2400
    assert ls.capacity_errors("SCRATCH_2", 3600) == [
        "storage_capacity_gib must be 1200 or a multiple of 2400 GiB for SCRATCH_2, got: 3600 "
        "(nearest allowed above: 4800)"]


def _brute_force_cheapest(demand, dataset, free, types, prices):
    """Every allowed capacity up to a bound for every priced option: the cheapest cost meeting both needs,
    and, per option, the smallest capacity that does."""
    best = None
    smallest = {}
    for dtype in types:
        first, step = ls.CAPACITY_RULES[dtype]
        for per_unit in ls.PER_UNIT_THROUGHPUT[dtype]:
            price = prices.usd_per_gb_month.get((dtype, per_unit))
            if price is None:
                continue
            caps = [first] + [step * k for k in range(1, 3000)]
            for cap in caps:
                if ls.aggregate_throughput_mbps(cap, per_unit) >= demand - 1e-6 and cap * (1 - free) >= dataset - 1e-6:
                    smallest[(dtype, per_unit)] = cap
                    cost = cap * price
                    best = cost if best is None else min(best, cost)
                    break
    return best, smallest


@settings(max_examples=150, deadline=None)
@given(
    gpus=st.integers(min_value=1, max_value=512),
    per_gpu=st.floats(min_value=1, max_value=2000, allow_nan=False),
    dataset=st.floats(min_value=0, max_value=500_000, allow_nan=False),
    free=st.sampled_from([0.0, 0.1, 0.25]),
    types=st.sampled_from([("SCRATCH_2", "PERSISTENT_2"), ("PERSISTENT_2",), ("PERSISTENT_1",),
                           ("SCRATCH_2", "PERSISTENT_1", "PERSISTENT_2")]),
)
def test_plan_meets_demand_and_is_cheapest(gpus, per_gpu, dataset, free, types):
    plan = ls.plan_cache(gpus, per_gpu, dataset, deployment_types=types, free_space_fraction=free)
    # meets demand and holds the data
    assert plan.aggregate_throughput_mbps >= plan.demand_mbps - 1e-6
    assert plan.storage_capacity_gib * (1 - free) >= dataset - 1e-6
    assert ls.valid_capacity(plan.deployment_type, plan.storage_capacity_gib)
    assert plan.per_unit_storage_throughput in ls.PER_UNIT_THROUGHPUT[plan.deployment_type]
    # the cheapest of all allowed plans (brute force), and never more than one increment above the
    # smallest capacity of its own option that meets the needs
    best, smallest = _brute_force_cheapest(gpus * per_gpu, dataset, free, types, ls.DEFAULT_PRICES)
    assert plan.monthly_storage_cost_usd <= round(best, 2) + 0.01
    step = ls.CAPACITY_RULES[plan.deployment_type][1]
    assert plan.storage_capacity_gib <= smallest[(plan.deployment_type, plan.per_unit_storage_throughput)] + step


def _cli(argv):
    parser = argparse.ArgumentParser()
    ls.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_json(capsys):
    assert _cli(["size-cache", "--gpus", "64", "--per-gpu-mbps", "200", "--dataset-tib", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["deployment_type"] == "PERSISTENT_2" and out["storage_capacity_gib"] == 14400
    assert out["prices_as_of"] == ls.DEFAULT_PRICES.as_of


def test_cli_text_and_errors(capsys, tmp_path):
    assert _cli(["size-cache", "--gpus", "8", "--per-gpu-mbps", "25", "--dataset-gib", "1024"]) == 0
    assert "SCRATCH_2, 1200 GiB" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:  # a usage error, named by argparse (issue 19: bounded argument types)
        _cli(["size-cache", "--gpus", "0", "--per-gpu-mbps", "25", "--dataset-gib", "1", "--json"])
    assert exit_.value.code == 2 and "--gpus must be a whole number in [1, 1e+06], got: '0'" in capsys.readouterr().err
    prices = tmp_path / "p.json"
    prices.write_text(json.dumps({"region": "eu-west-1", "as_of": "2026-10-01", "source": "test", "prices": [
        {"deployment_type": "PERSISTENT_2", "per_unit_throughput": 250, "usd_per_gb_month": 0.2}]}))
    assert _cli(["size-cache", "--gpus", "8", "--per-gpu-mbps", "25", "--dataset-gib", "1", "--types",
                 "PERSISTENT_2", "--prices", str(prices), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["per_unit_storage_throughput"] == 250
