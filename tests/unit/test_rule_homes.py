"""One home per rule: the dataset-name and S3-prefix rules live in mlinfra.domain.lake; the config and the
constructs import them, and each handler shipped alone keeps a copy that must behave the same."""

from __future__ import annotations

import pytest

from mlinfra.domain import lake
from mlinfra.lambdas.landing_glue import handler as landing_glue
from mlinfra.lambdas.pipeline_validate import handler as pipeline_validate
from mlinfra.lambdas.transfer_idp import handler as transfer_idp

NAMES = ["images", "Images", "img.v2", "a", "_manifest", "-x", "x" * 63, "x" * 64, "x" * 128, "x" * 129,
         "a b", "a/b", "ümlaut", "", "v1", "UPPER", "with_underscore", "dots.in.name", "0start"]
PREFIXES = ["a/", "team-a/images/", "a", "/a/", "a//", "a=b/", "a b/", "../", "x/../", "é/", "", "a/b/c/", "*/", "a/*/",
            "_quarantine/", "./", "a.b/"]


@pytest.mark.parametrize("name", [n for n in NAMES if "/" not in n])  # a "/" splits the key itself
def test_landing_glue_accepts_exactly_the_shared_dataset_names(name):
    accepted = landing_glue.split_key(f"{name}/v1/file.csv") is not None
    assert accepted == (lake.dataset_name_error(name) is None)


@pytest.mark.parametrize("name", NAMES)
def test_validate_handler_accepts_exactly_the_retrainable_names(name):
    assert bool(pipeline_validate.DATASET_RE.fullmatch(name)) == (lake.retrainable_dataset_error(name) is None)


@pytest.mark.parametrize("name", NAMES)
def test_every_retrainable_dataset_is_an_ingestion_dataset(name):
    if lake.retrainable_dataset_error(name) is None:
        assert lake.dataset_name_error(name) is None


@pytest.mark.parametrize("prefix", PREFIXES)
def test_transfer_idp_accepts_exactly_the_shared_prefixes(prefix):
    assert bool(transfer_idp._PREFIX_RE.fullmatch(prefix)) == (lake.user_prefix_error(prefix) is None)
    if lake.user_prefix_error(prefix) is None:  # an access scope is always a valid S3 prefix
        assert lake.prefix_error(prefix) is None


@pytest.mark.parametrize("prefix", PREFIXES)
def test_constructs_and_config_use_the_shared_prefix_rule(prefix):
    from mlinfra.config import load_config
    from mlinfra.constructs.data_lake import validate_prefix

    ok = lake.prefix_error(prefix) is None
    try:
        validate_prefix(prefix)
        construct_ok = True
    except ValueError:
        construct_ok = False
    assert construct_ok == ok
    if prefix:
        team = {"name": "abc", "cost_centre": "x", "write_prefixes": [f"curated/{prefix}"]}
        try:
            load_config({"defaults": {"vending": {"teams": [team]}}, "environments": {"dev": {}}}, "dev")
            config_ok = True
        except ValueError:
            config_ok = False
        assert config_ok == ok
