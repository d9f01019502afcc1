#!/usr/bin/env bash
# Train a first champion (level-2 flow) unless the registry already has one.
# Environment: TAXI_MLOPS_BIN, TAXI_MLOPS_HOME, MLFLOW_TRACKING_URI, TRAIN_ARGS.
set -euo pipefail
echo "a first champion unless the registry has one (taxi-mlops level2 train $TRAIN_ARGS --unless-champion)"
# shellcheck disable=SC2086 # TRAIN_ARGS is a list of CLI arguments
"$TAXI_MLOPS_BIN/taxi-mlops" level2 train $TRAIN_ARGS --unless-champion
