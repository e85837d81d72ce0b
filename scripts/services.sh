#!/usr/bin/env bash
# The shared engines adpipe's distributed mode and its tests use, idempotently:
#   scripts/services.sh up     install (once) and start what is not running
#   scripts/services.sh down   stop what this script started
#   scripts/services.sh status
# PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are expected to run already
# (the development and CI machines start them); this script checks them.
# ClickHouse: Debian's clickhouse-server (18.16), HTTP on 127.0.0.1:8123.
# Kafka protocol: tansu 0.6.0 (cargo install, once; ~10 min) with its SQLite storage, 127.0.0.1:9092.
#   SQLite, not memory storage: tansu's memory storage answers a fetch that starts inside a
#   record batch with the *next* batch, so a consumer resuming from a committed offset inside
#   a producer batch never sees the rest of it (issue 17); the SQLite storage fetches record
#   by record and keeps its data across a broker restart, as a real Kafka cluster does.
#   Installed into its own root, so an older tansu elsewhere on PATH is never picked up.
#   Its data: $state/tansu/tansu.db (ADPIPE_TANSU_RESET=1 starts from an empty one).
set -euo pipefail
cd "$(dirname "$0")/.."
state="${ADPIPE_SERVICES_DIR:-/tmp/adpipe-services}"
mkdir -p "$state"

clickhouse_up() {
  if curl -sf http://127.0.0.1:8123/ping >/dev/null 2>&1; then echo "clickhouse: up"; return 0; fi
  if ! command -v clickhouse-server >/dev/null 2>&1; then
    echo "installing clickhouse-server (Debian package)..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client >"$state/apt.log" 2>&1 \
      || { cat "$state/apt.log"; exit 1; }
  fi
  mkdir -p /var/lib/clickhouse /var/log/clickhouse-server
  if id clickhouse >/dev/null 2>&1; then
    chown -R clickhouse:clickhouse /var/lib/clickhouse /var/log/clickhouse-server
    start-stop-daemon --start --background --make-pidfile --pidfile "$state/clickhouse.pid" \
      --chuid clickhouse --exec /usr/sbin/clickhouse-server -- --config-file=/etc/clickhouse-server/config.xml
  else
    start-stop-daemon --start --background --make-pidfile --pidfile "$state/clickhouse.pid" \
      --exec /usr/sbin/clickhouse-server -- --config-file=/etc/clickhouse-server/config.xml
  fi
  for _ in $(seq 1 300); do
    curl -sf http://127.0.0.1:8123/ping >/dev/null 2>&1 && { echo "clickhouse: up"; return 0; }
    sleep 0.1
  done
  echo "clickhouse did not start; see /var/log/clickhouse-server/"; exit 1
}

# The tansu binary the tests use too (host/tests/all/distributed.rs reads ADPIPE_TEST_TANSU).
tansu_root="${ADPIPE_TANSU_ROOT:-$HOME/.cargo/adpipe-tansu-0.6.0-sqlite}"
tansu_bin="$tansu_root/bin/tansu"

tansu_install() {
  [ -x "$tansu_bin" ] && return 0
  echo "installing tansu 0.6.0 with SQLite storage (cargo install, once)..."
  # A build directory that outlives an interrupted install, so the next try resumes
  # instead of compiling tansu's ~500 crates again.
  CARGO_TARGET_DIR="${ADPIPE_TANSU_BUILD_DIR:-$HOME/.cache/adpipe-tansu-build}" \
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$tansu_root" \
    >"$state/tansu-install.log" 2>&1 || { tail -30 "$state/tansu-install.log"; exit 1; }
}

kafka_up() {
  tansu_install
  # A broker this script started earlier on memory storage (before issue 17) is replaced.
  local cmdline="/proc/$(cat "$state/tansu.pid" 2>/dev/null)/cmdline"
  if [ -r "$cmdline" ] && tr '\0' ' ' <"$cmdline" | grep -q 'memory://'; then
    echo "kafka (tansu): replacing a memory-storage broker with the SQLite one"
    kill "$(cat "$state/tansu.pid")" 2>/dev/null || true
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null || break; sleep 0.1; done
  fi
  if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then echo "kafka (tansu): up"; return 0; fi
  mkdir -p "$state/tansu"
  if [ "${ADPIPE_TANSU_RESET:-0}" = 1 ]; then rm -f "$state/tansu/tansu.db"*; fi
  # The SQLite path is relative to the broker's working directory.
  (
    cd "$state/tansu"
    nohup setsid "$tansu_bin" broker --listener-url tcp://127.0.0.1:9092 \
      --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine sqlite://tansu.db \
      >"$state/tansu.log" 2>&1 </dev/null &
    echo $! >"$state/tansu.pid"
  )
  for _ in $(seq 1 300); do
    (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && { echo "kafka (tansu): up"; return 0; }
    sleep 0.1
  done
  echo "tansu did not start:"; cat "$state/tansu.log"; exit 1
}

check_port() { # name port
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then echo "$1: up"; else echo "$1: NOT reachable on 127.0.0.1:$2"; return 1; fi
}

case "${1:-up}" in
  up)
    check_port postgresql 5432 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    check_port redis 6379 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
    clickhouse_up
    kafka_up
    ;;
  down)
    if [ -f "$state/tansu.pid" ]; then
      kill "$(cat "$state/tansu.pid")" 2>/dev/null || true
      rm -f "$state/tansu.pid"; echo "kafka (tansu): stopped"
    fi
    if [ -f "$state/clickhouse.pid" ]; then
      start-stop-daemon --stop --oknodo --pidfile "$state/clickhouse.pid" --retry 10 >/dev/null
      rm -f "$state/clickhouse.pid"; echo "clickhouse: stopped"
    fi
    ;;
  status)
    check_port postgresql 5432 || true
    check_port redis 6379 || true
    curl -sf http://127.0.0.1:8123/ping >/dev/null 2>&1 && echo "clickhouse: up" || echo "clickhouse: down"
    check_port "kafka (tansu)" 9092 || true
    ;;
  tansu-path)
    tansu_install >&2
    echo "$tansu_bin"
    ;;
  *) echo "usage: $0 up|down|status|tansu-path"; exit 2 ;;
esac
