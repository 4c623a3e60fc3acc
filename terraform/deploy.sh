#!/usr/bin/env bash
# One-command deployment: ECR repositories, images, then the rest of the infrastructure.
# Safe to re-run: images whose tag is already in ECR are not rebuilt, and terraform only changes
# what differs (a new image tag rolls out new tasks, i.e. starts a new training run).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: terraform/deploy.sh [options] [-- TERRAFORM_ARGS...]

Deploys the parameter server and workers to AWS ECS Fargate:
  1. checks the prerequisites (terraform, aws CLI, docker, AWS credentials)
  2. terraform init
  3. creates the ECR repositories first (terraform apply -target=...)
  4. logs docker in to ECR
  5. builds both images for the target platform, tagged with the git commit
     ("<commit>-dirty-<UTC time>" when the work tree has uncommitted changes), and pushes them
  6. terraform apply of everything else
  7. prints the monitoring commands

Options:
  --platform P   linux/amd64 (default; X86_64 tasks) or linux/arm64 (ARM64 tasks, ~20% cheaper,
                 native on Apple silicon)
  --region R     AWS region (default: the previous deploy's, else us-west-2)
  --tag T        image tag to use instead of the one derived from git
  --dry-run      print the steps without running anything
  -h, --help     show this help
Arguments after -- go to both terraform apply runs, e.g. -- -var worker_count=4 -var server_mode=async;
their -var settings are saved with the deployment (below) and kept by later deploys until changed.

Environment:
  BASE_IMAGE     base image for the Dockerfiles (default: their node:24-slim)
The image tag, architecture, region and -var settings are saved in terraform/deploy.auto.tfvars, so
later plain terraform runs (`terraform plan`, `terraform apply -var worker_count=8`) and the next
deploy keep them instead of going back to the defaults.
EOF
}

# shellcheck source=SCRIPTDIR/../scripts/lib/cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/cli.sh"

platform="linux/amd64"
region=""
tag="${IMAGE_TAG:-}"
dry_run=false
cli_value_options=(--platform --region --tag)
cli_rest_allowed=true
option() {
  case "$1" in
    --platform) platform="$2" ;;
    --region) region="$2" ;;
    --tag) tag="$2" ;;
    --dry-run) dry_run=true ;;
    *) return 1 ;;
  esac
}
cli_parse deploy "$@"
tf_args=("${cli_rest[@]}")

# Keep deploying to the region of the existing deployment unless told otherwise: with the default
# region the same state would describe resources terraform cannot find, and it would recreate them.
if [[ -z "$region" && -f "$here/deploy.auto.tfvars" ]]; then
  region="$(sed -n 's/^region *= *"\(.*\)"$/\1/p' "$here/deploy.auto.tfvars")"
fi

case "$platform" in
  linux/amd64) architecture="X86_64" docker_arch="amd64" ;;
  linux/arm64) architecture="ARM64" docker_arch="arm64" ;;
  *) die "unsupported --platform '$platform': Fargate runs linux/amd64 or linux/arm64" ;;
esac

# --- Image tag: immutable and unique per build, so every deploy of new code is a new task definition.
if [[ -z "$tag" ]]; then
  command -v git >/dev/null || die "cannot derive the image tag: git is not installed; pass --tag TAG"
  commit="$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null)" ||
    die "cannot derive the image tag: $repo is not a git checkout with a commit; pass --tag TAG"
  tag="$commit"
  if [[ -n "$(git -C "$repo" status --porcelain 2>/dev/null)" ]]; then
    # Uncommitted changes: the commit alone does not describe the image, and ECR tags are immutable.
    tag="$commit-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
fi
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid image tag '$tag'"

tf_vars=(-var "image_tag=$tag" -var "cpu_architecture=$architecture")
if [[ -n "$region" ]]; then
  tf_vars+=(-var "region=$region")
fi
# ${a[@]+"${a[@]}"}: expands an empty array without tripping `set -u` in macOS's bash 3.2.
tf_vars+=(${tf_args[@]+"${tf_args[@]}"})

# The -var settings to save with the deployment: those of the previous deploy (the lines it wrote
# besides the three above), then this run's -var NAME=VALUE arguments, a later one replacing an
# earlier one of the same name. Two arrays, not an associative one: macOS's bash 3.2 has none.
saved_names=()
saved_values=()
save_setting() {
  local i
  for i in ${saved_names[@]+"${!saved_names[@]}"}; do
    if [[ "${saved_names[$i]}" == "$1" ]]; then
      saved_values[i]="$2"
      return
    fi
  done
  saved_names+=("$1")
  saved_values+=("$2")
}
# A -var value as a tfvars expression: a list or map as written (terraform parses those), anything
# else as a quoted string, which terraform converts to the variable's number or bool type.
tfvars_value() {
  case "$1" in
    "["* | "{"*) printf '%s' "$1" ;;
    *)
      local v="${1//\\/\\\\}"
      v="${v//\"/\\\"}"
      v="${v//\$\{/\$\$\{}"
      v="${v//%\{/%%\{}"
      printf '"%s"' "$v"
      ;;
  esac
}
if [[ -f "$here/deploy.auto.tfvars" ]]; then
  while IFS= read -r line; do
    if [[ "$line" =~ ^([a-z_][a-z0-9_]*)\ *=\ *(.*)$ ]]; then
      case "${BASH_REMATCH[1]}" in
        image_tag | cpu_architecture | region) ;;
        *) save_setting "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" ;;
      esac
    fi
  done <"$here/deploy.auto.tfvars"
fi
pending_var=false
for arg in ${tf_args[@]+"${tf_args[@]}"}; do
  if $pending_var; then
    pending_var=false
  elif [[ "$arg" == -var ]]; then
    pending_var=true
    continue
  elif [[ "$arg" == -var=* ]]; then
    arg="${arg#-var=}"
  else
    continue
  fi
  [[ "$arg" =~ ^([a-z_][a-z0-9_]*)=(.*)$ ]] || die "cannot read the terraform argument -var '$arg': expected NAME=VALUE"
  case "${BASH_REMATCH[1]}" in
    image_tag | cpu_architecture | region) die "-var ${BASH_REMATCH[1]}=…: use deploy.sh's --tag, --platform or --region instead" ;;
  esac
  save_setting "${BASH_REMATCH[1]}" "$(tfvars_value "${BASH_REMATCH[2]}")"
done

build_args=()
if [[ -n "${BASE_IMAGE:-}" ]]; then
  build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi

step_no=0
step() {
  step_no=$((step_no + 1))
  printf '\n==> [%d] %s\n' "$step_no" "$*"
}

# Runs a command, or only shows it with --dry-run.
run() {
  if $dry_run; then
    printf '[dry-run] %s\n' "$*"
  else
    "$@"
  fi
}

check_prerequisites() {
  local missing=()
  command -v terraform >/dev/null ||
    missing+=("terraform is not installed: https://developer.hashicorp.com/terraform/install (>= 1.9)")
  command -v aws >/dev/null ||
    missing+=("aws CLI is not installed: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html")
  if ! command -v docker >/dev/null; then
    missing+=("docker is not installed: https://docs.docker.com/get-docker/")
  elif ! docker info >/dev/null 2>&1; then
    missing+=("docker is installed but its daemon is not running: start Docker Desktop or dockerd")
  fi
  if command -v aws >/dev/null; then
    local who=(aws sts get-caller-identity --query Account --output text)
    if [[ -n "$region" ]]; then
      who+=(--region "$region")
    fi
    if ! "${who[@]}" >/dev/null 2>&1; then
      missing+=("AWS credentials are missing or expired: run 'aws configure' or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN (AWS Academy: copy them from 'AWS Details' into ~/.aws/credentials)")
    fi
  fi
  if ((${#missing[@]} > 0)); then
    echo "deploy: missing prerequisites:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

echo "deploy: image tag $tag, platform $platform ($architecture tasks)"

if $dry_run; then
  step "Check prerequisites (terraform, aws, docker, AWS credentials)"
  echo "[dry-run] skipped"
else
  step "Check prerequisites"
  check_prerequisites
  echo "terraform, aws, docker and AWS credentials found"
fi

step "Initialise terraform"
run terraform -chdir="$here" init -input=false

step "Create the ECR repositories"
run terraform -chdir="$here" apply -input=false -auto-approve \
  -target=aws_ecr_repository.parameter_server -target=aws_ecr_repository.worker \
  -target=aws_ecr_lifecycle_policy.parameter_server -target=aws_ecr_lifecycle_policy.worker \
  "${tf_vars[@]}"

if $dry_run; then
  server_repo="<parameter_server_ecr_repository_url>"
  worker_repo="<worker_ecr_repository_url>"
  aws_region="${region:-<region>}"
  registry="<account>.dkr.ecr.$aws_region.amazonaws.com"
else
  server_repo="$(terraform -chdir="$here" output -raw parameter_server_ecr_repository_url)"
  worker_repo="$(terraform -chdir="$here" output -raw worker_ecr_repository_url)"
  registry="${server_repo%%/*}"
  # <account>.dkr.ecr.<region>.amazonaws.com: the region the repositories were created in.
  IFS=. read -r _ _ _ aws_region _ <<<"$registry"
fi

step "Log docker in to $registry"
if $dry_run; then
  echo "[dry-run] aws ecr get-login-password --region $aws_region | docker login --username AWS --password-stdin $registry"
else
  aws ecr get-login-password --region "$aws_region" |
    docker login --username AWS --password-stdin "$registry"
fi

# Builds and pushes one image unless ECR already has this tag (tags are immutable, so an existing
# tag is exactly this commit's image: re-runs skip the build).
publish() {
  local dockerfile="$1" repo_url="$2"
  local image="$repo_url:$tag"
  if ! $dry_run && aws ecr describe-images --region "$aws_region" --repository-name "${repo_url#*/}" \
    --image-ids "imageTag=$tag" >/dev/null 2>&1; then
    echo "$image is already in ECR, not rebuilding"
    return 0
  fi
  run docker build --platform "$platform" ${build_args[@]+"${build_args[@]}"} -f "$repo/docker/$dockerfile" -t "$image" "$repo"
  if ! $dry_run; then
    # Catches the documented failure mode early: an image for the wrong CPU ("exec format error").
    local built
    built="$(docker image inspect --format '{{.Architecture}}' "$image")"
    [[ "$built" == "$docker_arch" ]] ||
      die "$image was built for $built, but the tasks run $docker_arch: check that your docker supports --platform $platform (buildx/QEMU)"
  fi
  run docker push "$image"
}

step "Build and push the parameter server image ($platform)"
publish Dockerfile.server "$server_repo"

step "Build and push the worker image ($platform)"
publish Dockerfile.worker "$worker_repo"

# The deployment's settings as a tfvars file.
write_settings() {
  echo "# Written by deploy.sh: the deployed image, platform and -var settings, so plain terraform runs"
  echo "# and the next deploy keep them. Change a setting with make deploy ARGS=\"-- -var name=value\"."
  echo "image_tag        = \"$tag\""
  echo "cpu_architecture = \"$architecture\""
  if [[ -n "$region" ]]; then
    echo "region           = \"$region\""
  fi
  local i
  for i in ${saved_names[@]+"${!saved_names[@]}"}; do
    echo "${saved_names[$i]} = ${saved_values[$i]}"
  done
}

step "Save the deployment settings to deploy.auto.tfvars"
if $dry_run; then
  write_settings | sed 's/^/[dry-run] /'
else
  write_settings >"$here/deploy.auto.tfvars"
  echo "wrote $here/deploy.auto.tfvars"
fi

step "Deploy the infrastructure"
run terraform -chdir="$here" apply -input=false -auto-approve "${tf_vars[@]}"

step "Done. Follow the run with:"
if $dry_run; then
  echo "[dry-run] terraform -chdir=$here output -raw monitoring_commands"
else
  terraform -chdir="$here" output -raw monitoring_commands
  echo
  echo "Estimated cost while running: \$$(terraform -chdir="$here" output -raw estimated_cost_per_hour_usd)/hour."
  echo "When training completes the job scales its services to 0; ./destroy.sh removes everything."
fi
