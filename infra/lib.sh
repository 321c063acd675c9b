# Shared by infra/*.sh and scripts/*.sh - source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"          (from infra/)
#   source "$(dirname "${BASH_SOURCE[0]}")/../infra/lib.sh" (from scripts/)
# Strict mode, the repository root, where the Kafka jars live, and the life cycle of a locally
# started service (pid file, readiness wait, stop) - one copy, so the broker and the registry
# are started and stopped the same way.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# infra/kafka.sh resolves the jars there; scripts that run Kafka's own tools read them there.
KAFKA_HOME_DIR="${QCHEM_KAFKA_HOME:-$ROOT/.local/kafka}"

# The caller sets SERVICE (the log prefix), and for the functions below PIDFILE and TIMEOUT.
log() { echo "[$SERVICE] $*" >&2; }

running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Wait until the command $1 succeeds, every $2 seconds, for at most TIMEOUT seconds. When the
# process dies first, show the last $3 lines of the logs named after it, so the reason is on
# the screen rather than in a file nobody opens.
wait_until() {
  local check=$1 pause=$2 lines=$3; shift 3
  local deadline=$((SECONDS + TIMEOUT))
  until $check; do
    if ! running_pid >/dev/null; then
      log "$SERVICE exited during start-up; last lines of $*:"
      tail -n "$lines" "$@" >&2 2>/dev/null || true
      exit 1
    fi
    if (( SECONDS > deadline )); then log "not ready after ${TIMEOUT}s ($1)"; exit 1; fi
    sleep "$pause"
  done
}

# Stop the process in PIDFILE: TERM, up to 20 s to exit cleanly, then KILL. $1, if given,
# says which one (e.g. "port 8085") where several may run side by side.
stop_service() {
  local pid where="${1:+, $1}"
  if ! pid="$(running_pid)"; then log "not running${where}"; rm -f "$PIDFILE"; return 0; fi
  kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  log "stopped (pid $pid${where})"
}
