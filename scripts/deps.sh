#!/usr/bin/env bash
# Brings up the real servers that the tests need, on loopback, reusing any that
# already answer, and stops only what it started.
#
#   scripts/deps.sh up [pg] [redis] [kafka] [mlflow]   (no names = all)
#   scripts/deps.sh down                                stop what `up` started
#   scripts/deps.sh status
#
# After `up`, "$STATE_DIR/env" holds export lines for the tests:
#   STOCKCAST_TEST_PG_URL         postgres://postgres@127.0.0.1:5432/stockcast_test
#   STOCKCAST_TEST_REDIS_URL      redis://127.0.0.1:6379
#   STOCKCAST_TEST_KAFKA_BROKERS  127.0.0.1:9092
#   STOCKCAST_TEST_MLFLOW_URL     http://127.0.0.1:5050
# Each is taken from the caller's environment when already set there.
#
# Servers it can start (with throwaway data under the state dir):
#   pg      the Debian PostgreSQL cluster (apt-get install postgresql when root and missing)
#   redis   redis-server, nothing kept on disk (apt-get install redis-server when missing)
#   kafka   tansu, an Apache Kafka compatible broker, in memory (cargo install when missing);
#           checked with librdkafka (confluent-kafka, pip into the venv)
#   mlflow  MLflow tracking server + registry, SQLite store, --serve-artifacts (pip into a venv,
#           with skl2onnx and onnxruntime for the tests that log ONNX models through the mlflow client)
#
# Directories (overridable):
#   STOCKCAST_STATE_DIR  ${TMPDIR:-/tmp}/stockcast-deps         pid files, logs, data, env
#   STOCKCAST_TOOLS_DIR  ${XDG_CACHE_HOME:-$HOME/.cache}/stockcast/tools  (tansu in bin/)
#   STOCKCAST_VENV       ${XDG_CACHE_HOME:-$HOME/.cache}/stockcast/venv   (mlflow)
set -euo pipefail

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/stockcast"
STATE_DIR="${STOCKCAST_STATE_DIR:-${TMPDIR:-/tmp}/stockcast-deps}"
TOOLS_DIR="${STOCKCAST_TOOLS_DIR:-$CACHE_DIR/tools}"
VENV="${STOCKCAST_VENV:-$CACHE_DIR/venv}"
PID_DIR="$STATE_DIR/pids"

PG_URL="${STOCKCAST_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/stockcast_test}"
REDIS_URL="${STOCKCAST_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
KAFKA_BROKERS="${STOCKCAST_TEST_KAFKA_BROKERS:-127.0.0.1:9092}"
MLFLOW_URL="${STOCKCAST_TEST_MLFLOW_URL:-http://127.0.0.1:5050}"

# Bounded waits, in seconds.
PG_WAIT="${STOCKCAST_DEPS_PG_WAIT:-60}"
REDIS_WAIT="${STOCKCAST_DEPS_REDIS_WAIT:-30}"
KAFKA_WAIT="${STOCKCAST_DEPS_KAFKA_WAIT:-60}"
MLFLOW_WAIT="${STOCKCAST_DEPS_MLFLOW_WAIT:-240}"

ALL_DEPS=(pg redis kafka mlflow)
APT_UPDATED=0

# ---------------------------------------------------------------------------
# helpers

log() { echo "$*"; }
warn() { echo "deps.sh: $*" >&2; }
die() { echo "deps.sh: error: $*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

now_ms() { local t="${EPOCHREALTIME/./}"; echo "${t:0:-3}"; }

is_loopback() { [[ "$1" == 127.* || "$1" == localhost || "$1" == "::1" || "$1" == "[::1]" ]]; }

# Splits "scheme://[userinfo@]host[:port][/path][?query]" into URL_HOST / URL_PORT / URL_PATH.
parse_url() {
  local url="$1" default_port="$2" rest hostport
  rest="${url#*://}"
  rest="${rest#*@}"
  hostport="${rest%%[/?]*}"
  URL_PATH=""
  if [[ "$rest" == */* ]]; then
    URL_PATH="${rest#*/}"
    URL_PATH="${URL_PATH%%\?*}"
  fi
  if [[ "$hostport" =~ ^\[(.*)\]:([0-9]+)$ ]]; then
    URL_HOST="${BASH_REMATCH[1]}"; URL_PORT="${BASH_REMATCH[2]}"
  elif [[ "$hostport" =~ ^([^:]+):([0-9]+)$ ]]; then
    URL_HOST="${BASH_REMATCH[1]}"; URL_PORT="${BASH_REMATCH[2]}"
  else
    URL_HOST="${hostport:-127.0.0.1}"; URL_PORT="$default_port"
  fi
}

# shellcheck disable=SC2016  # expanded by the inner bash
tcp_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

tail_log() { [[ -f "$1" ]] && tail -n 20 "$1" | sed 's/^/    | /' >&2; return 0; }

apt_install() {
  is_root || die "$* is missing: install it (Debian: apt-get install -y $*)"
  if [[ "$APT_UPDATED" -eq 0 ]]; then
    warn "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    APT_UPDATED=1
  fi
  warn "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 8>&- || die "apt-get install $* failed"
}

pidfile() { echo "$PID_DIR/$1.pid"; }

# Prints the pid recorded for NAME when that process is still alive and is the
# program we started (its command line contains PATTERN); drops a stale pid file.
live_pid() {
  local name="$1" pattern="$2" f pid
  f="$(pidfile "$name")"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"; then
    echo "$pid"
    return 0
  fi
  rm -f "$f"
  return 1
}

# Starts a command detached in its own session (so it outlives this script and
# its whole process group can be stopped), recording the group leader's pid.
spawn() {
  local name="$1" logfile="$2"
  shift 2
  rm -f "$(pidfile "$name")"
  : >"$logfile"
  # shellcheck disable=SC2016  # $$ and $@ expand in the child shell
  # fd 8 is deps.sh's lock: a server that kept it would block every later run.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$(pidfile "$name")" "$@" \
    </dev/null >>"$logfile" 2>&1 8>&- &
  local _
  for _ in $(seq 1 50); do
    [[ -s "$(pidfile "$name")" ]] && return 0
    sleep 0.1
  done
  die "$name did not start (log $logfile)"
}

# Stops the process group led by PID: TERM, then KILL after 20 s.
stop_group() {
  local pid="$1" _
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

# wait_until SECONDS NAME LOG PIDNAME CHECK...: polls CHECK until it succeeds.
# PIDNAME (may be empty) names the pid file of the server we just started: if
# that process dies we fail at once; if SECONDS pass, we stop it and fail, so a
# failed `up` leaves nothing half-started behind.
wait_until() {
  local secs="$1" name="$2" logfile="$3" pidname="$4" deadline pid=""
  shift 4
  deadline=$((SECONDS + secs))
  until "$@"; do
    [[ -n "$pidname" && -s "$(pidfile "$pidname")" ]] && pid="$(cat "$(pidfile "$pidname")")"
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$(pidfile "$pidname")"
      tail_log "$logfile"
      die "$name exited during start-up (log $logfile)"
    fi
    if ((SECONDS >= deadline)); then
      if [[ -n "$pid" ]]; then
        stop_group "$pid"
        rm -f "$(pidfile "$pidname")"
      fi
      tail_log "$logfile"
      die "$name did not answer within ${secs}s (stopped it; log $logfile)"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------
# PostgreSQL

pg_setup_url() {
  parse_url "$PG_URL" 5432
  PG_HOST="$URL_HOST"; PG_PORT="$URL_PORT"; PG_DB="${URL_PATH:-stockcast_test}"
  # Maintenance connection: the same server and user, database "postgres".
  PG_ADMIN_URL="${PG_URL%%\?*}"
  PG_ADMIN_URL="${PG_ADMIN_URL%/*}/postgres"
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

pg_psql() { PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -d "$PG_ADMIN_URL" "$@"; }

pg_cluster_version() {
  [[ -d /etc/postgresql ]] || return 1
  local v
  v="$(find /etc/postgresql -mindepth 2 -maxdepth 2 -name main -printf '%P\n' 2>/dev/null | cut -d/ -f1 | sort -V | tail -n 1)"
  [[ -n "$v" ]] && echo "$v"
}

# Only for a PostgreSQL this script installed: Debian's default pg_hba asks for
# peer/scram; switch the loopback and socket lines to trust and reload.
pg_trust_loopback() {
  local ver="$1" hba="/etc/postgresql/$1/main/pg_hba.conf"
  [[ -f "$hba" ]] || return 0
  sed -i -E \
    -e 's/^(local[[:space:]]+all[[:space:]]+(all|postgres)[[:space:]]+)(peer|md5|scram-sha-256)[[:space:]]*$/\1trust/' \
    -e 's/^(host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1\/32|::1\/128)[[:space:]]+)(md5|scram-sha-256)[[:space:]]*$/\1trust/' \
    "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >/dev/null 2>&1 || true
}

pg_up() {
  pg_setup_url
  local how="reused" ver installed=0 created=
  command -v psql >/dev/null || apt_install postgresql-client
  if ! pg_ready; then
    is_loopback "$PG_HOST" || die "PostgreSQL at $PG_HOST:$PG_PORT does not answer (not a loopback address: not starting one)"
    if ! ver="$(pg_cluster_version)"; then
      is_root || die "PostgreSQL is not installed: install it (Debian: apt-get install -y postgresql) or set STOCKCAST_TEST_PG_URL"
      apt_install postgresql
      installed=1
      touch "$STATE_DIR/pg.installed-by-deps"
      ver="$(pg_cluster_version)" || die "apt-get installed postgresql but no cluster exists under /etc/postgresql"
    fi
    [[ -f "$STATE_DIR/pg.installed-by-deps" ]] && installed=1
    if ! pg_ready; then
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start >"$STATE_DIR/postgres-start.log" 2>&1 8>&- \
        || { tail_log "$STATE_DIR/postgres-start.log"; die "could not start PostgreSQL $ver/main (log $STATE_DIR/postgres-start.log; as non-root run it as the postgres user)"; }
      echo "$ver" >"$PID_DIR/postgres.cluster"
      how="started cluster $ver/main"
    fi
    wait_until "$PG_WAIT" postgres "/var/log/postgresql/postgresql-$ver-main.log" "" pg_ready
    if [[ "$installed" -eq 1 ]] && ! pg_psql -c 'SELECT 1' >/dev/null 2>&1; then
      pg_trust_loopback "$ver"
      sleep 1
    fi
  elif [[ -f "$PID_DIR/postgres.cluster" ]]; then
    how="running (started by deps.sh, cluster $(cat "$PID_DIR/postgres.cluster")/main)"
  fi
  pg_psql -c 'SELECT 1' >/dev/null 2>&1 \
    || die "PostgreSQL answers on $PG_HOST:$PG_PORT but $PG_ADMIN_URL is refused (needs trust auth for that user, or a password in STOCKCAST_TEST_PG_URL)"
  if [[ "$(pg_psql -tA -v db="$PG_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'")" != 1 ]]; then
    pg_psql -v db="$PG_DB" <<<'CREATE DATABASE :"db"' >/dev/null
    created=" (created database $PG_DB)"
  fi
  log "postgres: $how $PG_HOST:$PG_PORT$created"
}

pg_down() {
  local f="$PID_DIR/postgres.cluster" ver
  [[ -f "$f" ]] || return 0
  ver="$(cat "$f")"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main stop >/dev/null 2>&1 || warn "could not stop PostgreSQL $ver/main"
  rm -f "$f"
  log "postgres: stopped cluster $ver/main"
}

# ---------------------------------------------------------------------------
# Redis

redis_setup_url() { parse_url "$REDIS_URL" 6379; REDIS_HOST="$URL_HOST"; REDIS_PORT="$URL_PORT"; }

redis_ready() { [[ "$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

redis_up() {
  redis_setup_url
  local pid
  command -v redis-cli >/dev/null || apt_install redis-tools
  if redis_ready; then
    if pid="$(live_pid redis redis-server)"; then
      log "redis: running (started by deps.sh, pid $pid) $REDIS_HOST:$REDIS_PORT"
    else
      log "redis: reused $REDIS_HOST:$REDIS_PORT"
    fi
    return 0
  fi
  is_loopback "$REDIS_HOST" || die "Redis at $REDIS_HOST:$REDIS_PORT does not answer (not a loopback address: not starting one)"
  stop_stale redis redis-server
  tcp_open "$REDIS_HOST" "$REDIS_PORT" && die "port $REDIS_HOST:$REDIS_PORT is taken by something that is not Redis"
  command -v redis-server >/dev/null || apt_install redis-server
  local dir="$STATE_DIR/redis" logfile="$STATE_DIR/redis.log"
  rm -rf "$dir"
  mkdir -p "$dir"
  : >"$logfile"
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
    --save "" --appendonly no --dir "$dir" --logfile "$logfile" \
    --pidfile "$(pidfile redis)" >/dev/null 8>&- \
    || { tail_log "$logfile"; die "redis-server failed to start (log $logfile)"; }
  wait_until "$REDIS_WAIT" redis "$logfile" redis redis_ready
  log "redis: started redis-server on $REDIS_HOST:$REDIS_PORT (log $logfile)"
}

redis_down() {
  local pid
  pid="$(live_pid redis redis-server)" || return 0
  stop_group "$pid"
  rm -f "$(pidfile redis)"
  log "redis: stopped (pid $pid)"
}

# ---------------------------------------------------------------------------
# Kafka protocol broker: tansu

kafka_setup() {
  parse_url "tcp://${KAFKA_BROKERS%%,*}" 9092
  KAFKA_HOST="$URL_HOST"; KAFKA_PORT="$URL_PORT"
}

# The Kafka checks use librdkafka, the client the services use (rdkafka), via
# the confluent-kafka Python package in the tools venv. Debian 12's kcat can't
# be used: its librdkafka 2.0.2 misparses the tagged fields that tansu sends in
# its ApiVersions v3 response and never gets past the handshake.
kafka_probe() {
  timeout 40 "$VENV/bin/python" - "$@" <<'PY'
import sys, time, uuid
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

mode, brokers = sys.argv[1], sys.argv[2]
base = {"bootstrap.servers": brokers, "log_level": 0}
admin = AdminClient(base)
# A real metadata request for all topics (asking for a named one could auto-create it).
admin.list_topics(timeout=5)
if mode == "ready":
    sys.exit(0)

# roundtrip: explicit topic, idempotent keyed produce with a header, consumer
# group with a manual commit.
topic = "stockcast.deps.smoke.v1"
err = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].exception(10)
if err is not None and err.args[0].name() != "TOPIC_ALREADY_EXISTS":
    sys.exit(f"create topic {topic}: {err}")
token = uuid.uuid4().hex.encode()
producer = Producer({**base, "enable.idempotence": True, "acks": "all", "message.timeout.ms": 10000})
failures = []
producer.produce(topic, key=b"SMOKE", value=token, headers=[("probe", b"deps.sh")],
                 on_delivery=lambda e, m: e and failures.append(e))
if producer.flush(15) or failures:
    sys.exit(f"produce to {topic} failed: {failures or 'timed out'}")
consumer = Consumer({**base, "group.id": "stockcast-deps-" + token.decode(),
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.subscribe([topic])
deadline = time.time() + 20
try:
    while time.time() < deadline:
        msg = consumer.poll(1)
        if msg is None or msg.error():
            continue
        if msg.value() == token and msg.key() == b"SMOKE" and msg.headers() == [("probe", b"deps.sh")]:
            consumer.commit(msg, asynchronous=False)
            sys.exit(0)
finally:
    consumer.close()
sys.exit(f"produced to {topic} but did not consume it back within 20s")
PY
}

# TCP connect, then a real Kafka metadata request.
kafka_ready() {
  tcp_open "$KAFKA_HOST" "$KAFKA_PORT" || return 1
  kafka_probe ready "$KAFKA_BROKERS" >/dev/null 2>&1
}

# Makes sure the tools venv can import MODULE, pip-installing PACKAGE when not.
venv_pip() {
  local module="$1" package="$2" logdir="$CACHE_DIR/logs" logfile
  "$VENV/bin/python" -c "import $module" >/dev/null 2>&1 && return 0
  mkdir -p "$logdir"
  logfile="$logdir/$package-install.log"
  if [[ ! -x "$VENV/bin/python" ]]; then
    command -v python3 >/dev/null || apt_install python3 python3-venv
    # Debian's own python3 needs python3-venv for ensurepip.
    python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv
  fi
  warn "pip install $package into $VENV (log $logfile)"
  (
    flock 9
    { [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"; } >"$logfile" 2>&1
    "$VENV/bin/python" -m pip install "$package" >>"$logfile" 2>&1
  ) 9>"$CACHE_DIR/.venv-install.lock" || { tail_log "$logfile"; die "could not install $package into $VENV (log $logfile)"; }
}

tansu_bin() {
  if [[ -x "$TOOLS_DIR/bin/tansu" ]]; then
    echo "$TOOLS_DIR/bin/tansu"
  elif command -v tansu >/dev/null; then
    command -v tansu
  else
    return 1
  fi
}

tansu_install() {
  local logdir="$CACHE_DIR/logs" logfile
  mkdir -p "$logdir" "$TOOLS_DIR"
  logfile="$logdir/tansu-install.log"
  command -v cargo >/dev/null || die "tansu is missing and cargo is not on PATH"
  warn "tansu is missing: cargo install tansu --locked --features dynostore,postgres --root $TOOLS_DIR (takes ~20 min; log $logfile)"
  # One install at a time, even across concurrent runs.
  (
    flock 9
    [[ -x "$TOOLS_DIR/bin/tansu" ]] && exit 0
    cargo install tansu --locked --features dynostore,postgres --root "$TOOLS_DIR" >"$logfile" 2>&1
  ) 9>"$TOOLS_DIR/.tansu-install.lock" || { tail_log "$logfile"; die "cargo install tansu failed (log $logfile)"; }
}

# Produces a unique record and reads it back: the broker works end to end.
kafka_roundtrip() {
  local out
  out="$(kafka_probe roundtrip "$KAFKA_BROKERS" 2>&1)" && return 0
  printf '%s\n' "$out" | tail -n 5 >&2
  return 1
}

# Our own server that no longer answers: stop it before starting a new one.
stop_stale() {
  local name="$1" pattern="$2" pid
  pid="$(live_pid "$name" "$pattern")" || return 0
  warn "$name (pid $pid, started by deps.sh) does not answer: restarting it"
  stop_group "$pid"
  rm -f "$(pidfile "$name")"
}

kafka_up() {
  kafka_setup
  local pid bin logfile="$STATE_DIR/tansu.log"
  venv_pip confluent_kafka confluent-kafka
  if kafka_ready; then
    if pid="$(live_pid tansu tansu)"; then
      log "kafka: running (tansu started by deps.sh, pid $pid) $KAFKA_HOST:$KAFKA_PORT"
    else
      log "kafka: reused $KAFKA_HOST:$KAFKA_PORT"
    fi
    return 0
  fi
  is_loopback "$KAFKA_HOST" || die "Kafka at $KAFKA_HOST:$KAFKA_PORT does not answer (not a loopback address: not starting one)"
  stop_stale tansu tansu
  tcp_open "$KAFKA_HOST" "$KAFKA_PORT" && die "port $KAFKA_HOST:$KAFKA_PORT is open but does not answer a Kafka metadata request"
  bin="$(tansu_bin)" || { tansu_install; bin="$(tansu_bin)"; }
  # tansu reads several options from the environment (CLUSTER_ID, LISTENER_URL,
  # ADVERTISED_LISTENER_URL, STORAGE_ENGINE, SCHEMA_REGISTRY,
  # OTEL_EXPORTER_OTLP_ENDPOINT...): start it with a clean one.
  spawn tansu "$logfile" env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
    -u STORAGE_ENGINE -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u DATA_LAKE \
    "$bin" broker \
    --cluster-id stockcast-test \
    --listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
    --advertised-listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
    --storage-engine memory://tansu/
  pid="$(cat "$(pidfile tansu)")"
  wait_until "$KAFKA_WAIT" tansu "$logfile" tansu kafka_ready
  if ! kafka_roundtrip; then
    stop_group "$pid"
    rm -f "$(pidfile tansu)"
    die "tansu answers metadata but the produce/consume round trip failed (stopped it; log $logfile)"
  fi
  log "kafka: started tansu on $KAFKA_HOST:$KAFKA_PORT (pid $pid, log $logfile; produce/consume OK)"
}

kafka_down() {
  local pid
  pid="$(live_pid tansu tansu)" || return 0
  stop_group "$pid"
  rm -f "$(pidfile tansu)"
  log "kafka: stopped tansu (pid $pid)"
}

# ---------------------------------------------------------------------------
# MLflow

mlflow_setup() { parse_url "$MLFLOW_URL" 5050; MLFLOW_HOST="$URL_HOST"; MLFLOW_PORT="$URL_PORT"; }

mlflow_ready() {
  curl -sf -m 3 "${MLFLOW_URL%/}/health" >/dev/null 2>&1 || return 1
  # /health skips MLflow's Host-header check; a REST call does not.
  [[ "$(curl -sf -m 5 "${MLFLOW_URL%/}/api/2.0/mlflow/registered-models/search?max_results=1" 2>/dev/null)" == "{"* ]]
}

mlflow_up() {
  mlflow_setup
  local pid dir="$STATE_DIR/mlflow" logfile="$STATE_DIR/mlflow.log" t0 ms version
  command -v curl >/dev/null || apt_install curl
  # The registry tests log models as users do, with the mlflow client from this venv:
  # mlflow.onnx.log_model (which needs onnxruntime) of a scikit-learn model converted by
  # skl2onnx (which brings onnx and scikit-learn).
  venv_pip mlflow mlflow
  venv_pip skl2onnx skl2onnx
  venv_pip onnxruntime onnxruntime
  if mlflow_ready; then
    if pid="$(live_pid mlflow mlflow)"; then
      log "mlflow: running (started by deps.sh, pid $pid) $MLFLOW_URL"
    else
      log "mlflow: reused $MLFLOW_URL"
    fi
    return 0
  fi
  is_loopback "$MLFLOW_HOST" || die "MLflow at $MLFLOW_URL does not answer (not a loopback address: not starting one)"
  stop_stale mlflow mlflow
  tcp_open "$MLFLOW_HOST" "$MLFLOW_PORT" && die "port $MLFLOW_HOST:$MLFLOW_PORT is taken by something that is not an MLflow server"
  if [[ ! -x "$VENV/bin/mlflow" ]]; then
    warn "mlflow is missing from $VENV: pip install mlflow (a few minutes)"
    venv_pip mlflow mlflow
  fi
  rm -rf "$dir"
  mkdir -p "$dir/artifacts"
  t0="$(now_ms)"
  # One worker is plenty for tests and starts faster on a small machine. The
  # default Host-header allow-list already covers localhost/127.0.0.1 on any port.
  # MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: no job runner (a huey consumer
  # pool of ~8 Python processes for GenAI jobs); the registry and artifact
  # APIs do not use it.
  spawn mlflow "$logfile" env -C "$dir" MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    "$VENV/bin/mlflow" server \
    --backend-store-uri "sqlite:///$dir/mlflow.db" \
    --serve-artifacts --artifacts-destination "$dir/artifacts" \
    --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers 1
  pid="$(cat "$(pidfile mlflow)")"
  wait_until "$MLFLOW_WAIT" mlflow "$logfile" mlflow mlflow_ready
  ms=$(($(now_ms) - t0))
  version="$(curl -sf -m 3 "${MLFLOW_URL%/}/version" 2>/dev/null || true)"
  log "mlflow: started mlflow ${version:-server} on $MLFLOW_HOST:$MLFLOW_PORT in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s (pid $pid, log $logfile)"
}

mlflow_down() {
  local pid
  pid="$(live_pid mlflow mlflow)" || return 0
  stop_group "$pid"
  rm -f "$(pidfile mlflow)"
  log "mlflow: stopped (pid $pid)"
}

# ---------------------------------------------------------------------------
# commands

write_env() {
  local f="$STATE_DIR/env"
  {
    echo "# written by scripts/deps.sh up; source it: . $f"
    printf 'export STOCKCAST_TEST_PG_URL=%q\n' "$PG_URL"
    printf 'export STOCKCAST_TEST_REDIS_URL=%q\n' "$REDIS_URL"
    printf 'export STOCKCAST_TEST_KAFKA_BROKERS=%q\n' "$KAFKA_BROKERS"
    printf 'export STOCKCAST_TEST_MLFLOW_URL=%q\n' "$MLFLOW_URL"
  } >"$f.tmp"
  mv "$f.tmp" "$f"
  log "env: $f"
}

with_lock() {
  mkdir -p "$STATE_DIR" "$PID_DIR"
  exec 8>"$STATE_DIR/.lock"
  flock -w 600 8 || die "another deps.sh holds $STATE_DIR/.lock"
}

cmd_up() {
  local deps=("$@") d
  [[ ${#deps[@]} -gt 0 ]] || deps=("${ALL_DEPS[@]}")
  for d in "${deps[@]}"; do
    case "$d" in
      pg | postgres | redis | kafka | mlflow) ;;
      *) die "unknown dependency '$d' (expected: ${ALL_DEPS[*]})" ;;
    esac
  done
  with_lock
  for d in "${deps[@]}"; do
    case "$d" in
      pg | postgres) pg_up ;;
      redis) redis_up ;;
      kafka) kafka_up ;;
      mlflow) mlflow_up ;;
    esac
  done
  write_env
}

cmd_down() {
  with_lock
  mlflow_down
  kafka_down
  redis_down
  pg_down
  return 0
}

cmd_status() {
  mkdir -p "$PID_DIR"
  local pid state
  pg_setup_url
  state="down"
  if command -v pg_isready >/dev/null && pg_ready; then
    state="up"; [[ -f "$PID_DIR/postgres.cluster" ]] && state="up (started by deps.sh)"
  fi
  log "postgres: $state $PG_HOST:$PG_PORT"
  redis_setup_url
  state="down"
  if command -v redis-cli >/dev/null && redis_ready; then
    state="up"; pid="$(live_pid redis redis-server)" && state="up (started by deps.sh, pid $pid)"
  fi
  log "redis: $state $REDIS_HOST:$REDIS_PORT"
  kafka_setup
  state="down"
  if ! "$VENV/bin/python" -c 'import confluent_kafka' >/dev/null 2>&1; then
    tcp_open "$KAFKA_HOST" "$KAFKA_PORT" && state="port open (no confluent-kafka in $VENV to probe it)"
  elif kafka_ready; then
    state="up"; pid="$(live_pid tansu tansu)" && state="up (tansu started by deps.sh, pid $pid)"
  fi
  log "kafka: $state $KAFKA_HOST:$KAFKA_PORT"
  mlflow_setup
  state="down"
  if mlflow_ready; then
    state="up"; pid="$(live_pid mlflow mlflow)" && state="up (started by deps.sh, pid $pid)"
  fi
  log "mlflow: $state $MLFLOW_URL"
  [[ -f "$STATE_DIR/env" ]] && log "env: $STATE_DIR/env"
  return 0
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
