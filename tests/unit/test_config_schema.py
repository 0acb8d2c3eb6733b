"""The configuration as pydantic models: strict types, unknown keys refused with a suggestion, declared bounds,
a published JSON Schema, and a loader that refuses hostile files quickly with a named error (issue 17 item 2,
issue 19 item 10). Fuzzed with hypothesis: the loader answers a PlatformConfig or a ConfigError, nothing else."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
import typing
from pathlib import Path

import jsonschema
import pydantic
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlinfra import cli, config
from mlinfra.config import Bounds, ConfigError, PlatformConfig, load_config, load_config_file
from mlinfra.domain.safe_yaml import MAX_EXPANDED_NODES

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "config" / "platform.schema.json"
REFERENCE = yaml.safe_load((ROOT / "config" / "platform.yaml").read_text())


def errors_of(defaults: dict, env: str = "dev") -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config({"defaults": defaults, "environments": {env: {}}}, env)
    return exc.value.errors


def file_errors(tmp_path: Path, data: bytes, name: str = "c.yaml") -> list[str]:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ConfigError) as exc:
        load_config_file(path, "dev")
    return exc.value.errors


# --- the published schema ---------------------------------------------------------------------------


def test_committed_schema_is_the_generated_one():
    assert json.loads(SCHEMA_FILE.read_text()) == config.json_schema(), (
        "config/platform.schema.json is stale: run `mlinfra schema -o config/platform.schema.json`"
    )


def test_reference_file_names_its_schema_for_editors():
    first = (ROOT / "config" / "platform.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=platform.schema.json"


def test_reference_file_is_valid_against_the_schema():
    jsonschema.Draft202012Validator(config.json_schema()).validate(REFERENCE)


@pytest.mark.parametrize("mutation, where", [
    ({"network": {"max_az": 2}}, "max_az"),
    ({"network": {"max_azs": 9}}, "9"),
    ({"data_lake": {"encryption": "rot13"}}, "rot13"),
    ({"pipeline": {"use_spot": "yes"}}, "yes"),
])
def test_schema_refuses_what_the_loader_refuses(mutation, where):
    document = {"defaults": mutation, "environments": {"dev": {}}}
    with pytest.raises(jsonschema.ValidationError, match=where):
        jsonschema.Draft202012Validator(config.json_schema()).validate(document)
    with pytest.raises(ConfigError):
        load_config(document, "dev")


def test_schema_carries_field_documentation_and_bounds():
    network = config.json_schema()["$defs"]["NetworkConfig"]["properties"]
    assert network["max_azs"]["minimum"] == 1 and network["max_azs"]["maximum"] == 6
    assert network["max_azs"]["description"].startswith("AZs used by the created VPC")
    assert config.json_schema()["$defs"]["NetworkConfig"]["additionalProperties"] is False


def test_cli_schema_prints_and_writes_the_schema(tmp_path, capsys):
    assert cli.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == config.json_schema()
    out = tmp_path / "s.json"
    assert cli.main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == config.json_schema()
    assert cli.main(["schema", "-o", str(tmp_path / "missing" / "dir" / "s.json")]) == 2


# --- every section is a declared model ----------------------------------------------------------------


def _section_classes() -> list[type]:
    return config._section_classes(PlatformConfig)


def test_every_section_is_a_strict_pydantic_model():
    classes = _section_classes()
    assert len(classes) >= 15
    for cls in classes:
        assert pydantic.dataclasses.is_pydantic_dataclass(cls), f"{cls.__name__}: decorate it with @section"
        assert issubclass(cls, config._Section), f"{cls.__name__}: subclass _Section"
        assert cls.__pydantic_config__.get("extra") == "forbid", cls.__name__


def _numbers(tp) -> bool:
    tp = config._strip_optional(tp)
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return config._strip_optional(tp) in (int, float)


def test_every_numeric_field_declares_its_bounds():
    missing = []
    for cls in _section_classes():
        for name, info in cls.__pydantic_fields__.items():
            if cls is config.LifecycleConfig:
                continue  # bounded by mlinfra.domain.lake.lifecycle_errors (shared with the DataLake construct)
            if _numbers(info.annotation) and not any(isinstance(m, Bounds) for m in info.metadata):
                missing.append(f"{cls.__name__}.{name}")
            args = typing.get_args(info.annotation)
            if typing.get_origin(info.annotation) is list and args and _numbers(args[0]):
                if not config._annotated_bounds(args[0]):
                    missing.append(f"{cls.__name__}.{name}[]")
    assert missing == [], f"give these fields Annotated[int, between(lo, hi)]: {missing}"


# --- messages: path, value, what is allowed ------------------------------------------------------------


def test_unknown_key_is_refused_with_the_nearest_field():
    (error,) = [e for e in errors_of({"network": {"max_az": 3}}) if e.startswith("network.max_az:")]
    assert error.startswith("network.max_az: unknown field; allowed: [")
    assert error.endswith("did you mean 'max_azs'?")


def test_unknown_key_deep_in_a_list_names_its_path():
    errors = errors_of({"vending": {"teams": [{"name": "abc", "cost_centre": "x", "budget": 3}]}})
    assert any(e.startswith("vending.teams[0].budget: unknown field") for e in errors), errors


@pytest.mark.parametrize("defaults, expected", [
    ({"network": {"max_azs": 10**30}}, "network.max_azs: must be between 1 and 6, got: " + str(10**30)),
    ({"network": {"max_azs": -1}}, "network.max_azs: must be between 1 and 6, got: -1"),
    ({"pipeline": {"training_instance_count": -3}}, "pipeline.training_instance_count: must be between 1 and 10000, got: -3"),
    ({"serving": {"target_value": 1e300}}, "serving.target_value: must be <= 1000000000, got: 1e+300"),
    ({"vending": {"teams": [{"name": "abc", "cost_centre": "x", "budget_thresholds_percent": [50, 5000]}]}},
     "vending.teams[0].budget_thresholds_percent[1]: must be between 1 and 1000, got: 5000"),
    ({"data_lake": {"lifecycle": {"raw": {"glacier_days": 10**9}}}},
     "data_lake.lifecycle.raw.glacier_days: must be at most 36500 days (100 years) or null, got: 1000000000"),
])
def test_numbers_out_of_bounds_name_the_field_value_and_range(defaults, expected):
    assert expected in errors_of(defaults)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(value):
    errors = errors_of({"serving": {"latency_p99_ms": value}, "pipeline": {"threshold": value}})
    assert f"serving.latency_p99_ms: must be a finite number (not NaN or infinity), got: {value!r}" in errors
    assert any(e.startswith("pipeline.threshold: must be a finite number") for e in errors)


def test_nan_in_an_integer_field_is_refused():
    assert any(e.startswith("network.max_azs: expected an integer") for e in errors_of({"network": {"max_azs": math.nan}}))


@pytest.mark.parametrize("defaults, expected", [
    ({"pipeline": {"use_spot": "yes"}}, "pipeline.use_spot: expected true or false, got: 'yes'"),
    ({"network": {"max_azs": "3"}}, "network.max_azs: expected an integer, got: '3'"),
    ({"network": {"max_azs": 2.5}}, "network.max_azs: expected an integer, got: 2.5"),
    ({"network": {"max_azs": True}}, "network.max_azs: expected an integer, got: True"),
    ({"prefix": 1.5}, "prefix: expected a string, got: 1.5"),
    ({"network": 5}, "network: expected a mapping, got: 5"),
    ({"azs": "us-east-1a"}, "azs: expected a list of a string, got: 'us-east-1a'"),
])
def test_types_are_strict(defaults, expected):
    assert expected in errors_of(defaults)


def test_integers_read_by_yaml_become_text_where_text_is_expected():
    cfg = load_config({"defaults": {"account": 123456789012, "pipeline": {"hyperparameters": {"epochs": 10}},
                                    "tags": {"budget": 42}},
                       "environments": {"dev": {}}}, "dev")
    assert cfg.account == "123456789012"
    assert cfg.pipeline.hyperparameters == {"epochs": "10"}
    assert cfg.tags == {"budget": "42"}


def test_a_required_field_missing_is_named():
    assert "vending.teams[0].cost_centre: required field is missing" in errors_of({"vending": {"teams": [{"name": "abc"}]}})


def test_type_errors_and_rules_are_reported_together():
    errors = errors_of({"network": {"max_azs": "two"}, "region": "mars-1", "pipeline": {"datasets": ["UPPER"]}})
    assert "network.max_azs: expected an integer, got: 'two'" in errors
    assert any(e.startswith("region: must be an AWS region") for e in errors)
    assert any(e.startswith("pipeline.datasets: names must be 1-63 lowercase") for e in errors)


def test_a_value_out_of_bounds_is_reported_once():
    errors = errors_of({"pipeline": {"poll_interval_seconds": 0}})
    assert [e for e in errors if e.startswith("pipeline.poll_interval_seconds")] == [
        "pipeline.poll_interval_seconds: must be between 1 and 3600, got: 0"
    ]


# --- hostile files -------------------------------------------------------------------------------------


def _laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghijkl"[:levels - 1]:
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    return text


def test_billion_laughs_is_refused_fast(tmp_path):
    start = time.monotonic()
    errors = file_errors(tmp_path, ("defaults:\n  tags:\n" + "".join("    " + line + "\n" for line in _laughs().splitlines())
                                    + "environments: {dev: {}}\n").encode())
    assert time.monotonic() - start < 2
    assert errors == [f"not valid YAML: the document expands to more than {MAX_EXPANDED_NODES} values "
                      "(YAML aliases nested too deeply?)"]


def test_small_aliases_still_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("defaults:\n  azs: &azs [us-east-1a, us-east-1b]\nenvironments:\n  dev: {azs: *azs}\n")
    assert load_config_file(path, "dev").azs == ["us-east-1a", "us-east-1b"]


@pytest.mark.parametrize("encoding, expected", [
    ("utf-16", "not valid YAML: the file is UTF-16 encoded; save it as UTF-8"),
    ("utf-32", "not valid YAML: the file is UTF-32 encoded; save it as UTF-8"),
    ("utf-16-le", "not valid YAML: the file looks UTF-16 encoded (NUL bytes between characters); save it as UTF-8"),
])
def test_utf16_and_utf32_files_are_named(tmp_path, encoding, expected):
    assert file_errors(tmp_path, "defaults: {}\nenvironments: {dev: {}}\n".encode(encoding)) == [expected]


def test_non_utf8_bytes_are_named_with_their_offset(tmp_path):
    data = "defaults: {cost_centre: café}\nenvironments: {dev: {}}\n".encode("latin-1")
    errors = file_errors(tmp_path, data)
    assert errors == [f"not valid YAML: the file is not UTF-8: byte 0xe9 at offset {data.index(0xE9)} cannot be "
                      "decoded; save it as UTF-8"]


def test_utf8_with_bom_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("defaults: {cost_centre: café}\nenvironments: {dev: {}}\n".encode("utf-8-sig"))
    assert load_config_file(path, "dev").cost_centre == "café"


def test_duplicate_keys_are_refused_in_yaml_and_json(tmp_path):
    assert file_errors(tmp_path, b"defaults:\n  prefix: a\n  prefix: b\nenvironments: {dev: {}}\n") == [
        "not valid YAML: line 3: duplicate key 'prefix' in one mapping (first at line 2)"
    ]
    assert file_errors(tmp_path, b'{"defaults": {"prefix": "a", "prefix": "b"}, "environments": {"dev": {}}}', "c.json") == [
        "not valid JSON: duplicate key 'prefix' in one object"
    ]


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    assert file_errors(tmp_path, b"defaults: " + b"[" * 5000 + b"]" * 5000 + b"\n") == [
        "not valid YAML: nested deeper than 64 levels"
    ]
    assert file_errors(tmp_path, b'{"defaults": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "c.json") == [
        "not valid JSON: nested deeper than 64 levels"
    ]


def test_dates_stay_text(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("defaults: {cost_centre: 2024-01-01}\nenvironments: {dev: {}}\n")
    assert load_config_file(path, "dev").cost_centre == "2024-01-01"


# --- fuzzing -------------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=20,
)


def _leaf_paths(node, here=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaf_paths(v, here + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaf_paths(v, here + (i,))
    yield here


_PATHS = [p for p in _leaf_paths(REFERENCE["defaults"]) if p]


def _answer(document) -> None:
    try:
        cfg = load_config(document, "dev")
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
    else:
        assert isinstance(cfg, PlatformConfig)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(defaults=st.dictionaries(st.sampled_from(sorted(PlatformConfig.__pydantic_fields__)) | st.text(max_size=8),
                                _values, max_size=6))
def test_fuzz_any_defaults_give_a_config_or_a_config_error(defaults):
    _answer({"defaults": defaults, "environments": {"dev": {}}})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_PATHS), value=_values)
def test_fuzz_one_field_of_the_reference_file_replaced(path, value):
    document = copy.deepcopy(REFERENCE)
    node = document["defaults"]
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    document["environments"] = {"dev": document["environments"]["dev"]}
    _answer(document)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fuzz_any_bytes_give_a_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError):
        load_config_file(path, "dev")


def test_sections_still_behave_as_dataclasses(local_config):
    changed = dataclasses.replace(local_config.network, max_azs=3)
    assert changed.max_azs == 3 and local_config.network.max_azs != 3 or local_config.network.max_azs == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        local_config.network.max_azs = 5  # type: ignore[misc]


def test_cidr_with_host_bits_names_the_aligned_block():
    assert ("network.cidr: has host bits set (the block starts at its network address); use 10.117.48.0/22, "
            "got: '10.117.50.0/22'") in errors_of({"network": {"cidr": "10.117.50.0/22"}})
    assert "network.cidr: must be an IPv4 CIDR such as 10.0.0.0/16, got: '10.0.0.0/33'" in errors_of(
        {"network": {"cidr": "10.0.0.0/33"}})
