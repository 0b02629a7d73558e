#!/usr/bin/env bash
# Builds the sandbox runtime image `localhost/sinas-runtime:latest` WITHOUT any registry, for local dev
# and CI (production uses executor-node/Dockerfile, which needs a registry for its python:3.11-slim base).
#
# The image is a rootfs assembled from this host's Debian Python 3.11:
#   /usr/bin/python3.11 (+ python3 link), /usr/lib/python3.11 (pruned: test suites, idlelib, tkinter,
#   ensurepip, lib2to3, pydoc_data, config-*, test extension modules) precompiled once into
#   __pycache__ (unchecked-hash .pyc: the root file system is read-only, and compiling the stdlib on
#   every cold start would cost ~100 ms), the shared libraries of the interpreter and of lib-dynload
#   (ldd) plus the dynamic loader and libgcc_s, an ld.so.cache, CA certificates and zoneinfo (as in the
#   production image), minimal /etc from executor-node/runtime-image/rootfs/ (user `sinas`, uid 10001),
#   the runtime executor-node/runtime/*.py at /opt/sinas/runtime/, and mount points /run/sinas and /tmp.
# It is imported with `podman import` (or `docker import`) as one layer, CMD
# `python3 -u /opt/sinas/runtime/sinas_runtime.py`, USER 10001.
#
# Rebuilds only when an input changed: the sha256 of this script, executor-node/runtime-image/**,
# executor-node/runtime/*.py and the host interpreter binary is stored as image label
# `sinas.build-hash` and compared. `--force` rebuilds anyway.
#
# Usage: scripts/build-runtime-image.sh [--force]
# Env:   SINAS_RUNTIME_IMAGE (default localhost/sinas-runtime:latest), CONTAINER_CLI (podman|docker,
#        default: podman when installed, else docker), SINAS_HOST_PYTHON (default /usr/bin/python3.11).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${SINAS_RUNTIME_IMAGE:-localhost/sinas-runtime:latest}
PY=${SINAS_HOST_PYTHON:-/usr/bin/python3.11}
RUNTIME_DIR="$ROOT/executor-node/runtime"
OVERLAY_DIR="$ROOT/executor-node/runtime-image/rootfs"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h | --help) sed -n '2,23p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { echo "[build-runtime-image] $*"; }
die() { echo "[build-runtime-image] error: $*" >&2; exit 1; }

if [ -n "${CONTAINER_CLI:-}" ]; then
  CLI=$CONTAINER_CLI
elif command -v podman >/dev/null 2>&1; then
  CLI=podman
elif command -v docker >/dev/null 2>&1; then
  CLI=docker
else
  die "neither podman nor docker is installed (run scripts/setup-podman.sh as root)"
fi
[ -x "$PY" ] || die "$PY not found (the image is built from the host's Debian Python 3.11)"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || die "$PY is not Python 3.11"

started=$(date +%s%N)

# ---- content hash of every input ----
hash_inputs() {
  {
    sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
    sha256sum "$PY" | cut -d' ' -f1
    (cd "$ROOT/executor-node" && find runtime-image runtime -type f \
      \( -path 'runtime/*.py' -o -path 'runtime-image/*' \) -not -path '*/__pycache__/*' -print0 |
      LC_ALL=C sort -z | xargs -0 -r sha256sum)
  } | sha256sum | cut -d' ' -f1
}
HASH=$(hash_inputs)

current=$("$CLI" image inspect --format '{{ index .Config.Labels "sinas.build-hash" }}' "$IMAGE" 2>/dev/null || true)
if [ "$FORCE" -eq 0 ] && [ "$current" = "$HASH" ]; then
  say "$IMAGE is up to date (build hash ${HASH:0:12}); use --force to rebuild"
  exit 0
fi
old_id=$("$CLI" image inspect --format '{{ .Id }}' "$IMAGE" 2>/dev/null || true)
say "building $IMAGE with $CLI (build hash ${HASH:0:12}${current:+, was ${current:0:12}})"

shopt -s nullglob
runtime_files=("$RUNTIME_DIR"/*.py)
shopt -u nullglob
if [ ${#runtime_files[@]} -eq 0 ]; then
  say "warning: no executor-node/runtime/*.py yet; the image's CMD will fail until the runtime exists"
fi

WORK=$(mktemp -d /var/tmp/sinas-rootfs.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
R="$WORK/rootfs"
MULTIARCH=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("MULTIARCH") or "")')
[ -n "$MULTIARCH" ] || die "cannot tell the multiarch triplet of $PY"

# ---- merged-/usr skeleton ----
mkdir -p "$R"/usr/{bin,lib,lib64,sbin,share} "$R"/{etc,opt/sinas/runtime,run/sinas,tmp,var/tmp,proc,sys,dev,root}
ln -s usr/bin "$R/bin"
ln -s usr/lib "$R/lib"
ln -s usr/lib64 "$R/lib64"
ln -s usr/sbin "$R/sbin"
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"

# copy_lib <path as ldd prints it>: copies the file (dereferenced) to the same soname under the
# canonical (symlink-free) directory, e.g. /lib/x86_64-linux-gnu/libc.so.6 -> usr/lib/x86_64-linux-gnu/.
copy_lib() {
  local src=$1 dir
  dir=$(readlink -f "$(dirname "$src")")
  [ -e "$R$dir/$(basename "$src")" ] && return 0
  mkdir -p "$R$dir"
  cp -L "$src" "$R$dir/"
}

# ---- interpreter and standard library ----
cp -L "$PY" "$R/usr/bin/python3.11"
ln -s python3.11 "$R/usr/bin/python3"
ln -s python3.11 "$R/usr/bin/python"
cp -a /usr/lib/python3.11 "$R/usr/lib/python3.11"
L="$R/usr/lib/python3.11"
rm -rf "$L"/{test,idlelib,tkinter,turtledemo,ensurepip,lib2to3,pydoc_data,site-packages,dist-packages} \
  "$L"/config-3.11-* "$L"/turtle.py "$L"/sitecustomize.py \
  "$L"/lib-dynload/{_test,_ctypes_test,_xxtestfuzz,xxlimited,_xxsubinterpreters}*.so
find "$L" -depth -type d \( -name __pycache__ -o -name test -o -name tests \) -exec rm -rf {} +
find "$L" -xtype l -delete # links into packages we did not copy

# ---- shared libraries (interpreter + extension modules), loader, libgcc_s (pthread_exit/cancel) ----
loader=$(ldd "$PY" | awk '$1 ~ /^\// {print $1; exit}')
[ -n "$loader" ] || die "cannot find the program interpreter of $PY"
copy_lib "$loader"
# keep the loader reachable at the exact path the binary asks for (/lib64 -> usr/lib64 above)
if [ ! -e "$R$loader" ]; then
  mkdir -p "$R$(dirname "$loader")"
  ln -s "$(readlink -f "$loader")" "$R$loader"
fi
while read -r lib; do
  copy_lib "$lib"
done < <(
  for f in "$PY" "$L"/lib-dynload/*.so; do
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
  done | sort -u
)
libgcc=$(ldconfig -p | awk '$1 == "libgcc_s.so.1" && /x86-64|64bit|aarch64/ {print $NF; exit}')
[ -n "$libgcc" ] && copy_lib "$libgcc"
printf '/usr/lib/%s\n/usr/lib\n' "$MULTIARCH" >"$R/etc/ld.so.conf"
ldconfig -r "$R" 2>/dev/null || say "warning: ldconfig -r failed; the loader falls back to its default paths"

# ---- data the production image (python:3.11-slim) also has: CA bundle, zoneinfo, services ----
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$R/etc/ssl/certs" "$R/usr/lib/ssl"
  cp -L /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/"
  ln -s /etc/ssl/certs/ca-certificates.crt "$R/usr/lib/ssl/cert.pem"
  ln -s /etc/ssl/certs "$R/usr/lib/ssl/certs"
fi
if [ -d /usr/share/zoneinfo ]; then
  cp -a /usr/share/zoneinfo "$R/usr/share/zoneinfo"
  rm -rf "$R"/usr/share/zoneinfo/{right,posix} # duplicates with leap seconds / POSIX names
  ln -s ../usr/share/zoneinfo/Etc/UTC "$R/etc/localtime"
fi
for f in /etc/services /etc/protocols; do [ -f "$f" ] && cp -L "$f" "$R/etc/"; done
# files the engine bind-mounts over; present so a read-only root never needs to create them
: >"$R/etc/hosts"
: >"$R/etc/hostname"
: >"$R/etc/resolv.conf"

# ---- minimal /etc (passwd/group with `sinas` uid 10001, nsswitch) and the runtime ----
cp -a "$OVERLAY_DIR"/. "$R"/
for f in "${runtime_files[@]}"; do cp "$f" "$R/opt/sinas/runtime/"; done

# ---- precompile (root is read-only at run time) ----
if ! "$PY" -m compileall -q -j0 --invalidation-mode unchecked-hash -s "$R" -p / \
  "$R/usr/lib/python3.11" "$R/opt/sinas/runtime" >"$WORK/compileall.log" 2>&1; then
  say "warning: some modules did not compile: $(grep -c '^\*\*\*' "$WORK/compileall.log" || true) errors"
fi

find "$R" -exec chmod go-w {} + 2>/dev/null || true
chmod 1777 "$R/tmp"
rootfs_size=$(du -sh "$R" | cut -f1)

# ---- import ----
new_id=$(tar -C "$R" --numeric-owner --owner=0 --group=0 -c . | "$CLI" import \
  --change 'CMD ["python3", "-u", "/opt/sinas/runtime/sinas_runtime.py"]' \
  --change 'USER 10001' \
  --change 'WORKDIR /tmp' \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
  --change 'ENV PYTHONUNBUFFERED=1' \
  --change 'ENV HOME=/tmp' \
  --change 'ENV SINAS_RUNTIME_SOCKET=/run/sinas/runtime.sock' \
  --change "LABEL sinas.build-hash=$HASH" \
  --change 'LABEL org.opencontainers.image.title=sinas-runtime' \
  --change "LABEL org.opencontainers.image.description=SINAS sandbox runtime built from the host's Python $("$PY" -c 'import platform; print(platform.python_version())')" \
  - "$IMAGE" 2>"$WORK/import.log" | tail -n1) || {
  cat "$WORK/import.log" >&2
  die "$CLI import failed"
}

# drop the image this one replaced (now untagged), unless a container still uses it
if [ -n "$old_id" ] && [ "$old_id" != "$("$CLI" image inspect --format '{{ .Id }}' "$IMAGE")" ]; then
  "$CLI" rmi "$old_id" >/dev/null 2>&1 || true
fi

size=$("$CLI" image inspect --format '{{ .Size }}' "$IMAGE")
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
elapsed="$((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))"
new_id=${new_id#sha256:}
say "built $IMAGE (${new_id:0:12}): image size $((size / 1000000)) MB (rootfs $rootfs_size), ${elapsed} s"
