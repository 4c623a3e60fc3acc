#!/usr/bin/env bash
# Builds the parameter server and worker images locally (what `make images` runs).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: docker/build-images.sh [-h] [--tag TAG] [--platform P] [--base IMAGE | --local-base]

Builds distributed-ps-parameter-server:TAG and distributed-ps-worker:TAG (default TAG: latest)
from the repository root.

  --tag TAG        image tag (default: latest)
  --platform P     target platform, e.g. linux/amd64 or linux/arm64 (default: the machine's)
  --base IMAGE     base image (default: the Dockerfiles' node:24-slim)
  --local-base     make a base image without Docker Hub (docker/make-local-base.sh) and use it
  -h, --help       show this help
EOF
}

# shellcheck source=SCRIPTDIR/../scripts/lib/cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/cli.sh"

tag="latest"
platform=""
base="${BASE_IMAGE:-}"
local_base=false
cli_value_options=(--tag --platform --base)
option() {
  case "$1" in
    --tag) tag="$2" ;;
    --platform) platform="$2" ;;
    --base) base="$2" ;;
    --local-base) local_base=true ;;
    *) return 1 ;;
  esac
}
cli_parse build-images "$@"

if $local_base; then
  base="distributed-ps-base:node24"
  "$here/make-local-base.sh" "$base"
fi

args=()
if [[ -n "$base" ]]; then
  args+=(--build-arg "BASE_IMAGE=$base")
fi
if [[ -n "$platform" ]]; then
  args+=(--platform "$platform")
fi

for component in server worker; do
  case "$component" in
    server) image="distributed-ps-parameter-server:$tag" ;;
    worker) image="distributed-ps-worker:$tag" ;;
  esac
  echo "build-images: $image"
  docker build ${args[@]+"${args[@]}"} -f "$here/Dockerfile.$component" -t "$image" "$repo"
done
