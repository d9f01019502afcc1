# The platform image: every level's CLI (`taxi-mlops`), with PostgreSQL and S3 clients. The
# cloud environment (infra/envs/aws) runs it as the MLflow server (`level2 server`), the pinned
# blue and green services (`level3 serve --pin-version`) and the level-4 monitoring task.
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
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[cloud]"

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TAXI_MLOPS_HOME=/var/lib/taxi-mlops \
    MLFLOW_DISABLE_TELEMETRY=true
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /var/lib/taxi-mlops \
    && chown app /var/lib/taxi-mlops
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl \
    && rm -rf /wheels
USER 10001
# Each service passes its own command; ECS health checks go through the load balancer.
HEALTHCHECK NONE
ENTRYPOINT ["taxi-mlops"]
CMD ["--help"]
