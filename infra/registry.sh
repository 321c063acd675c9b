#!/usr/bin/env bash
# Local Apicurio Registry (Confluent-compatible Schema Registry API) from Maven Central - no Docker.
#   infra/registry.sh up|down|status|wait|fetch|reset
# The app (io.apicurio:apicurio-registry-app:3.3.3, classifier all, a Quarkus fast-jar) is
# unpacked under .local/registry (git-ignored). Its schemas are kept in an H2 file database per
# port, so a restarted registry still knows every schema id (like the broker's data folder).
# `up` is idempotent: when the port already answers the ccompat API, nothing is started.
# Needs Java 21 or newer: QCHEM_REGISTRY_JAVA, else $JAVA_HOME, else `java` on the PATH, else
# the newest JDK under /usr/lib/jvm (QCHEM_REGISTRY_JVM_DIR) - and fails loudly when none is 21+.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SERVICE=registry
VERSION="${QCHEM_REGISTRY_VERSION:-3.3.3}"
HOME_DIR="${QCHEM_REGISTRY_HOME:-$ROOT/.local/registry}"
APP="$HOME_DIR/app-$VERSION"
PORT="${QCHEM_REGISTRY_PORT:-8085}"
RUN="$HOME_DIR/run-$PORT"  # pid, logs and data of the registry on this port
PIDFILE="$RUN/registry.pid"
HEAP="${QCHEM_REGISTRY_HEAP:-384m}"
TIMEOUT="${QCHEM_REGISTRY_START_TIMEOUT:-120}"
# Quarkus' management interface (health, metrics) would take 0.0.0.0:9000: loopback only,
# and on a port of its own per registry so that two can run side by side (0: any free one).
MGMT_PORT="${QCHEM_REGISTRY_MANAGEMENT_PORT:-0}"
READY_URL="http://127.0.0.1:$PORT/apis/ccompat/v7/subjects"

ready() { curl -fsS -o /dev/null --max-time 2 "$READY_URL" 2>/dev/null; }

java_major() {  # the major version of the java binary $1, or 0
  "$1" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}' \
    | grep -E '^[0-9]+$' || echo 0
}

find_java() {
  local candidates=()
  [[ -n "${QCHEM_REGISTRY_JAVA:-}" ]] && candidates+=("$QCHEM_REGISTRY_JAVA")
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null && candidates+=("$(command -v java)")
  local dir
  for dir in $(ls -d "${QCHEM_REGISTRY_JVM_DIR:-/usr/lib/jvm}"/*/ 2>/dev/null | sort -rV); do
    candidates+=("${dir}bin/java")
  done
  local java
  for java in "${candidates[@]}"; do
    if [[ -x "$java" ]] && (( $(java_major "$java") >= 21 )); then echo "$java"; return 0; fi
  done
  log "Apicurio Registry $VERSION needs Java 21 or newer; none found (tried: ${candidates[*]:-nothing})."
  log "Install one (e.g. apt-get install openjdk-21-jre-headless) or set QCHEM_REGISTRY_JAVA."
  return 1
}

fetch() {
  if [[ -f "$APP/.complete" ]]; then return; fi
  log "resolving io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all from Maven Central ..."
  mkdir -p "$HOME_DIR/dist" "$APP"
  mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all" \
    -DoutputDirectory="$HOME_DIR/dist" >&2
  tar -xzf "$HOME_DIR/dist/apicurio-registry-app-$VERSION-all.tar.gz" -C "$APP"
  local jar; jar="$(find "$APP" -name quarkus-run.jar | head -n1)"
  [[ -n "$jar" ]] || { log "no quarkus-run.jar in the archive"; exit 1; }
  dirname "$jar" > "$APP/.complete"
  rm -f "$HOME_DIR/dist/apicurio-registry-app-$VERSION-all.tar.gz"
  log "unpacked into $(cat "$APP/.complete")"
}

up() {
  if ready; then log "a registry already answers on 127.0.0.1:$PORT - starting nothing"; return 0; fi
  if pid="$(running_pid)"; then log "registry process $pid is starting - waiting"; wait_ready; return; fi
  local java; java="$(find_java)"
  fetch
  mkdir -p "$RUN/data"
  local started=$SECONDS
  # setsid: the registry must outlive the shell (make, a test) that started it.
  # H2 in a file, not the default in-memory database: schema ids survive a restart.
  # The child writes its own pid (then execs java): $! would be setsid's, which may fork.
  # Every descriptor is redirected: a caller reading our output (make, a test) must not wait
  # for the registry to exit.
  rm -f "$PIDFILE"
  (cd "$(cat "$APP/.complete")" && PIDFILE="$PIDFILE" exec setsid bash -c 'echo $$ > "$PIDFILE"; exec "$@"' _ \
    "$java" -Xmx"$HEAP" \
    -Dquarkus.http.port="$PORT" -Dquarkus.http.host=127.0.0.1 \
    -Dquarkus.management.port="$MGMT_PORT" -Dquarkus.management.host=127.0.0.1 \
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
    -Dapicurio.datasource.url="jdbc:h2:file:$RUN/data/registry;AUTO_SERVER=FALSE" \
    -Dapicurio.datasource.username=sa -Dapicurio.datasource.password=sa \
    -jar quarkus-run.jar) >"$RUN/stdout.log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
  log "started registry pid $(cat "$PIDFILE") with $java on port $PORT"
  wait_ready
  log "ready at http://127.0.0.1:$PORT/apis/ccompat/v7 after $((SECONDS - started))s"
}

wait_ready() { wait_until ready 0.5 30 "$RUN/stdout.log"; }

case "${1:-}" in
  up) up ;;
  down) stop_service "port $PORT" ;;
  reset) stop_service "port $PORT"; rm -rf "$RUN/data"; log "schemas wiped (port $PORT)" ;;
  status) if ready; then echo "up http://127.0.0.1:$PORT/apis/ccompat/v7"; else echo "down"; exit 1; fi ;;
  wait) wait_ready ;;
  fetch) find_java >/dev/null; fetch ;;
  java) find_java ;;
  *) echo "usage: $0 up|down|reset|status|wait|fetch|java" >&2; exit 2 ;;
esac
