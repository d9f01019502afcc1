# The platform image: every level's CLI (`taxi-mlops`, the entrypoint: a container's command
# is its arguments), with PostgreSQL and S3 clients. The cloud environment (infra/envs/aws)
# runs it as the MLflow server (`level2 server`), the level-3 replicas (`level3 serve`), the
# training task (`level2 train`) and the level-4 monitoring task; docker-compose.yml likewise.
# It is also the image of the Kubeflow pipeline's components (`level2 kfp compile --image`):
# they run `python3 -m kfp.dsl.executor_main`, so it has the kfp extra.
#   docker build -t taxi-mlops .
#   docker run --rm taxi-mlops --help
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY level1_devops ./level1_devops
COPY level2_training ./level2_training
COPY level3_deployment ./level3_deployment
COPY level4_automation ./level4_automation
COPY taxi_mlops ./taxi_mlops
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[cloud,kfp]"

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TAXI_MLOPS_HOME=/var/lib/taxi-mlops \
    MLFLOW_DISABLE_TELEMETRY=true
# gcc: the level-3 replicas build each tree model they load into native code, once per version
# (shared/native_trees.py; without a compiler they interpret the trees, ~4x slower a ride).
# gcc is bookworm's 12.2; libc6-dev must be the base image's own libc6 version, whichever
# bookworm point release that is, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc=4:12.2.0-3 libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /var/lib/taxi-mlops \
    && chown app /var/lib/taxi-mlops
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl \
    && rm -rf /wheels
# Prefect's migrated, empty database, copied into each new home (a training or monitoring
# task starts in one): level2_training/prefect_template.py
RUN python -m level2_training.prefect_template
USER 10001
# The writable paths of a read-only container (ECS: readonlyRootFilesystem). ECS copies a
# VOLUME path's contents and owner into the task's bind mount of the same path, which would
# otherwise be root's (infra/modules/ecs_service mounts exactly these two).
VOLUME ["/var/lib/taxi-mlops", "/tmp"]
# Each service passes its own command; ECS health checks go through the load balancer.
HEALTHCHECK NONE
ENTRYPOINT ["taxi-mlops"]
CMD ["--help"]
