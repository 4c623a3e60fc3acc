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

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

tag="latest"
platform=""
base="${BASE_IMAGE:-}"
local_base=false
while (($# > 0)); do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    --tag | --platform | --base)
      if (($# < 2)); then
        echo "build-images: $1 needs a value" >&2
        exit 2
      fi
      case "$1" in
        --tag) tag="$2" ;;
        --platform) platform="$2" ;;
        --base) base="$2" ;;
      esac
      shift
      ;;
    --local-base) local_base=true ;;
    *)
      echo "build-images: unknown argument: $1" >&2
      usage >&2
      exit 2
      ;;
  esac
  shift
done

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
