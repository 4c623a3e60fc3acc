#!/usr/bin/env bash
# Destroys everything deploy.sh created, after a confirmation (--yes skips it).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: terraform/destroy.sh [--yes] [-- TERRAFORM_ARGS...]

Destroys all AWS resources of this deployment: the ECS services and cluster, the ECR repositories
with their images, the S3 bucket with its datasets, checkpoints and models (unless
bucket_force_destroy = false), the log groups, Cloud Map namespace, security groups and VPC.

  --yes       do not ask for confirmation
  -h, --help  show this help
Arguments after -- go to terraform destroy, e.g. -- -var region=eu-west-1
EOF
}

# shellcheck source=SCRIPTDIR/../scripts/lib/cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/cli.sh"

assume_yes=false
cli_rest_allowed=true
option() {
  case "$1" in
    -y | --yes) assume_yes=true ;;
    *) return 1 ;;
  esac
}
cli_parse destroy "$@"
tf_args=("${cli_rest[@]}")

missing=()
command -v terraform >/dev/null ||
  missing+=("terraform is not installed: https://developer.hashicorp.com/terraform/install (>= 1.9)")
if ! command -v aws >/dev/null; then
  missing+=("aws CLI is not installed: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html")
elif ! aws sts get-caller-identity --query Account --output text >/dev/null 2>&1; then
  missing+=("AWS credentials are missing or expired: run 'aws configure' or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN")
fi
if ((${#missing[@]} > 0)); then
  echo "destroy: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

if ! $assume_yes; then
  echo "This destroys every resource in the terraform state of $here,"
  echo "including the ECR images and the S3 bucket with its datasets, checkpoints and models."
  printf 'Type "yes" to destroy: '
  answer=""
  # No stdin (CI, </dev/null) reads nothing and counts as "no".
  read -r answer || true
  if [[ "$answer" != "yes" ]]; then
    echo
    die "aborted, nothing destroyed (answer \"yes\", or pass --yes)"
  fi
fi

terraform -chdir="$here" init -input=false
# image_tag has no default; its value does not matter for a destroy.
terraform -chdir="$here" destroy -input=false -auto-approve -var "image_tag=destroy" ${tf_args[@]+"${tf_args[@]}"}
# The saved image tag/architecture describe a deployment that no longer exists.
rm -f "$here/deploy.auto.tfvars"
echo "destroy: done"
