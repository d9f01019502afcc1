"""The web framework's ceiling: a Flask app whose /predict answers a constant, served exactly as
the project's services are (shared/gunicorn_runner.py: the same worker class, threads, limits
and response path). benchmarks/serving.py measures each service against it.

    python -m benchmarks.constant_app --port 8200 --workers 2
"""

from __future__ import annotations

import argparse

from flask import Flask, Response, jsonify

from shared.gunicorn_runner import ServerOptions, run
from shared.web import json_app

ANSWER = {"duration": 12.3456, "variant": "blue", "model_version": "1"}


def create_app() -> Flask:
    app = json_app(__name__)

    @app.post("/predict")
    def predict() -> Response:
        return jsonify(ANSWER)

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=ServerOptions.threads)
    args = parser.parse_args()
    run(create_app, ServerOptions(port=args.port, workers=args.workers, threads=args.threads))


if __name__ == "__main__":
    main()
