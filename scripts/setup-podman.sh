#!/usr/bin/env bash
# Sets up podman as a Docker Engine API for the executor's docker sandbox driver (local dev and CI).
#
# Idempotent; run as root on Debian 12:
#   1. installs podman, runc and curl (skipped when present; waits for a held dpkg lock);
#   2. writes /etc/containers/containers.conf for this kind of host: runc instead of crun (crun fails on
#      hybrid cgroup v1/v2 hosts), cgroupfs cgroup manager, file events logger and k8s-file log driver
#      (no systemd/journald here), default ulimits the OCI runtime can actually set; and an empty
#      unqualified-search registry list (nothing is reachable; never try docker.io);
#   3. starts `podman system service --time=0 unix:///run/podman/podman.sock` in the background unless
#      the socket already answers, and waits until `GET /_ping` says OK.
# `--restart` restarts a service this script started (it also does so when containers.conf changed).
# Prints what it did. Point dockerode at the socket with DOCKER_HOST=unix:///run/podman/podman.sock
# (the executor's docker driver also finds /run/podman/podman.sock on its own).
set -euo pipefail

RESTART=0
for arg in "$@"; do
  case "$arg" in
    --restart) RESTART=1 ;;
    *) echo "usage: $0 [--restart]  (--restart: restart a service this script started)" >&2; exit 2 ;;
  esac
done

SOCKET=/run/podman/podman.sock
CONF=/etc/containers/containers.conf
LOG=/var/log/podman-service.log
PIDFILE=/run/podman/sinas-service.pid
conf_changed=0

say() { echo "[setup-podman] $*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "[setup-podman] must run as root (apt-get, /etc/containers, /run/podman)" >&2
  exit 1
fi

# 1. packages
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -eq 0 ]; then
  say "podman $(podman --version | awk '{print $3}'), runc and curl already installed"
else
  say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-o DPkg::Lock::Timeout=600 -q -y)
  # A fresh CI image may carry no package lists yet.
  if ! apt-cache show podman >/dev/null 2>&1; then
    apt-get "${apt_opts[@]}" update >/dev/null
  fi
  apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
  say "installed podman $(podman --version | awk '{print $3}'), $(runc --version | head -n1)"
fi

# 2. engine configuration
mkdir -p /etc/containers
desired_conf=$(cat <<'EOF'
# Written by scripts/setup-podman.sh (SINAS Edge executor). Overwritten on every run.
[containers]
# The OCI runtime may not raise rlimits above the service's own hard limits, and podman's defaults
# (nofile 1048576, nproc 4194304) are above them here: `podman run` fails with "error setting rlimit
# type 7/6: operation not permitted" unless ulimits are given. These defaults fix the CLI; the
# executor's docker driver always passes its own (nofile, nproc, fsize, core).
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
# No journald in these VMs/containers.
log_driver = "k8s-file"
# Never copy the service's own http(s)_proxy variables (possibly with credentials) into sandboxes.
http_proxy = false

[engine]
# crun fails on this kind of host (hybrid cgroups v1 + v2); runc works.
runtime = "runc"
# No systemd as PID 1: cgroupfs, and events to a file instead of journald.
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
)
if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$desired_conf" ]; then
  say "$CONF already up to date"
else
  printf '%s\n' "$desired_conf" >"$CONF"
  conf_changed=1
  say "wrote $CONF (runtime=runc, cgroup_manager=cgroupfs, events_logger=file, default_ulimits)"
fi

# Registries: none is reachable; an empty search list keeps short names from trying docker.io.
if [ ! -f /etc/containers/registries.conf.d/99-sinas.conf ]; then
  mkdir -p /etc/containers/registries.conf.d
  printf '# Written by scripts/setup-podman.sh\nunqualified-search-registries = []\n' \
    >/etc/containers/registries.conf.d/99-sinas.conf
  say "wrote /etc/containers/registries.conf.d/99-sinas.conf (no unqualified-search registries)"
fi

# 3. API service
ping() { curl -fsS --max-time 2 --unix-socket "$SOCKET" http://d/_ping 2>/dev/null; }

# A service this script started earlier must be restarted to read a changed containers.conf.
if { [ "$conf_changed" -eq 1 ] || [ "$RESTART" -eq 1 ]; } && [ -f "$PIDFILE" ]; then
  old_pid=$(cat "$PIDFILE")
  if kill -0 "$old_pid" 2>/dev/null && grep -q "system" "/proc/$old_pid/cmdline" 2>/dev/null; then
    say "restarting the podman service (pid $old_pid)"
    kill "$old_pid"
    for _ in $(seq 1 50); do kill -0 "$old_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE"
fi

if [ "$(ping || true)" = "OK" ]; then
  say "podman API already answers on $SOCKET"
  if [ "$conf_changed" -eq 1 ]; then
    say "note: that service was not started by this script; restart it to apply the new $CONF"
  fi
else
  mkdir -p "$(dirname "$SOCKET")"
  rm -f "$SOCKET"
  say "starting podman system service on unix://$SOCKET (log: $LOG)"
  # setsid + nohup: the service outlives this script and the CI step that ran it. Its working directory
  # is /run/podman because conmon (2.1.6 with podman 4.3) writes its `oom` marker file into the
  # service's cwd, not where podman looks for it: started from a checkout, it litters the checkout.
  (cd "$(dirname "$SOCKET")" && exec setsid nohup podman system service --time=0 "unix://$SOCKET" \
    >>"$LOG" 2>&1 </dev/null) &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    [ "$(ping || true)" = "OK" ] && break
    sleep 0.1
  done
  if [ "$(ping || true)" != "OK" ]; then
    echo "[setup-podman] podman API did not answer on $SOCKET within 10 s; last log lines:" >&2
    tail -n 20 "$LOG" >&2 || true
    exit 1
  fi
  say "podman API answers on $SOCKET (service pid $(cat "$PIDFILE"))"
fi

api_version=$(curl -fsS --unix-socket "$SOCKET" http://d/version | python3 -c \
  'import json,sys; v=json.load(sys.stdin); print(v.get("Version","?"), "API", v.get("ApiVersion","?"))' \
  2>/dev/null || echo "?")
say "ready: DOCKER_HOST=unix://$SOCKET (podman $api_version)"
