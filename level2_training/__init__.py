"""Level 2 - automated training: a Prefect pipeline with MLflow tracking and a model registry."""
