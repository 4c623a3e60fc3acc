#!/usr/bin/env bash
# Offline checks of the deployment code: terraform fmt, init from a local provider mirror, validate,
# terraform test (AWS mocked), and shellcheck on every script under terraform/, docker/ and scripts/lib/.
#
# init/validate/test run on a copy of the configuration in a temporary directory, so they neither
# touch a real deployment's .terraform/, lock file or image_tag.auto.tfvars, nor are influenced by them.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: terraform/test.sh [-h]

Runs offline: terraform fmt -check, terraform init (from a provider filesystem mirror),
terraform validate, terraform test, and shellcheck on terraform/, docker/ and scripts/lib/ scripts.

Environment:
  TF_PLUGIN_MIRROR  provider mirror root, the directory that contains registry.terraform.io/
                    (default: /opt/tf-plugins)
EOF
}

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
  "") ;;
  *)
    usage >&2
    exit 2
    ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
mirror="${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"

if ! command -v terraform >/dev/null; then
  echo "test.sh: terraform is not installed (need >= 1.9 on PATH)" >&2
  exit 1
fi
if [[ ! -d "$mirror/registry.terraform.io/hashicorp/aws" ]]; then
  echo "test.sh: no AWS provider mirror at $mirror: expected $mirror/registry.terraform.io/hashicorp/aws/<version>/<os_arch>/." >&2
  echo "test.sh: set TF_PLUGIN_MIRROR to the mirror root (the directory above registry.terraform.io)." >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Our own CLI config: the mirror is the only source of providers, so nothing tries the registry.
cat >"$tmp/terraformrc" <<EOF
provider_installation {
  filesystem_mirror {
    path = "$mirror"
  }
}
EOF
export TF_CLI_CONFIG_FILE="$tmp/terraformrc"
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

step() { printf '\n== %s\n' "$*"; }

step "terraform fmt -check -recursive"
terraform -chdir="$here" fmt -check -recursive -diff

mkdir -p "$tmp/config"
cp "$here"/*.tf "$here"/*.json "$tmp/config/"
cp -r "$here/tests" "$here/modules" "$tmp/config/"

step "terraform init (mirror: $mirror)"
terraform -chdir="$tmp/config" init -backend=false -input=false -no-color >"$tmp/init.log" 2>&1 || {
  cat "$tmp/init.log" >&2
  echo "test.sh: terraform init failed; is the AWS provider 5.x in $mirror?" >&2
  exit 1
}
grep -E 'Installed hashicorp/aws|Using previously-installed' "$tmp/init.log" || true

step "terraform validate"
terraform -chdir="$tmp/config" validate -no-color

step "terraform test"
terraform -chdir="$tmp/config" test -no-color

step "shellcheck"
if ! command -v shellcheck >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing shellcheck with apt-get"
    apt-get install -y -q shellcheck >/dev/null 2>&1 || {
      apt-get update -q >/dev/null
      apt-get install -y -q shellcheck >/dev/null
    }
  else
    echo "test.sh: shellcheck is not installed (apt-get install shellcheck)" >&2
    exit 1
  fi
fi
mapfile -t scripts < <(find "$here" "$repo/docker" "$repo/scripts/lib" -name .terraform -prune -o -type f -name '*.sh' -print | sort)
shellcheck -x "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"
