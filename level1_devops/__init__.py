"""Level 1 - DevOps, no MLOps: a parameterized, tested training script and a gunicorn service."""
