#!/usr/bin/env bash
# Make the level-3 service's green and its share what Terraform's variables say.
# Environment: TAXI_MLOPS_BIN, LEVEL3_URL, GREEN_VERSION (0 = none), GREEN_SHARE (0-100).
set -euo pipefail
cli="$TAXI_MLOPS_BIN/taxi-mlops"
current=$("$cli" level3 status --url "$LEVEL3_URL" --json |
  python3 -c 'import json, sys; s = json.load(sys.stdin)["state"]; print(s["green"] or 0)')
if [[ $GREEN_VERSION == 0 ]]; then
  if [[ $current != 0 ]]; then
    "$cli" level3 set-split --share 0 --mode off --url "$LEVEL3_URL"
  else
    echo "no green, nothing to do"
  fi
elif [[ $current != "$GREEN_VERSION" ]]; then
  "$cli" level3 deploy --version "$GREEN_VERSION" --share "$GREEN_SHARE" --url "$LEVEL3_URL" \
    --reason "terraform: green v$GREEN_VERSION at $GREEN_SHARE%"
else
  "$cli" level3 set-split --share "$GREEN_SHARE" --url "$LEVEL3_URL"
fi
