#!/usr/bin/env bash
# Train a first champion (level-2 flow) unless the registry already has one.
# Environment: TAXI_MLOPS_BIN, TAXI_MLOPS_HOME, MLFLOW_TRACKING_URI, TRAIN_ARGS.
set -euo pipefail
cli="$TAXI_MLOPS_BIN/taxi-mlops"
if "$cli" level2 status --json | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["aliases"].get("champion") else 1)'; then
  echo "the registry already has a champion"
  exit 0
fi
echo "no champion yet: training one (taxi-mlops level2 train $TRAIN_ARGS)"
# shellcheck disable=SC2086 # TRAIN_ARGS is a list of CLI arguments
"$cli" level2 train $TRAIN_ARGS
