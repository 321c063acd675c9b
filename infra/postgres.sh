#!/usr/bin/env bash
# Local PostgreSQL for qchem-events - no Docker.
#   infra/postgres.sh up|down|stop|start|status
# `up`: when DATABASE_URL (default postgresql://qchem:qchem@127.0.0.1:5432/qchem) already
# accepts connections, nothing is started. Otherwise the machine's installed Debian cluster
# is started (pg_ctlcluster, as root) and the role and databases are created idempotently.
# The schema itself is applied by Alembic migrations when the application starts.
set -euo pipefail
URL="${DATABASE_URL:-postgresql://qchem:qchem@127.0.0.1:5432/qchem}"
log() { echo "[postgres] $*" >&2; }

# Parse the URL with Python (already required) rather than fragile sed.
read -r PGU PGPW PGH PGP PGDB < <(python3 - "$URL" <<'PY'
import sys
from urllib.parse import urlsplit, unquote
u = urlsplit(sys.argv[1].replace("+psycopg2", ""))
print(unquote(u.username or "qchem"), unquote(u.password or "qchem"), u.hostname or "127.0.0.1",
      u.port or 5432, (u.path or "/qchem").lstrip("/") or "qchem")
PY
)

reachable() {
  PGPASSWORD="$PGPW" psql -h "$PGH" -p "$PGP" -U "$PGU" -d "$PGDB" -Atqc 'select 1' >/dev/null 2>&1
}

cluster() {
  # The newest installed cluster (Debian ships one, e.g. "15 main").
  pg_lsclusters -h | sort -k1,1n | tail -n1 | awk '{print $1" "$2}'
}

as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

up() {
  if reachable; then log "DATABASE_URL answers ($PGU@$PGH:$PGP/$PGDB) - starting nothing"; return 0; fi
  command -v pg_lsclusters >/dev/null || { log "PostgreSQL is not installed (apt-get install postgresql)"; exit 1; }
  read -r ver name < <(cluster)
  [[ -n "${ver:-}" ]] || { log "no PostgreSQL cluster found (pg_createcluster)"; exit 1; }
  if ! pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1==v && $2==n {print $4}' | grep -q online; then
    pg_ctlcluster "$ver" "$name" start
    log "started cluster $ver/$name"
  fi
  for _ in $(seq 1 60); do as_postgres psql -Atqc 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
  as_postgres psql -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PGU') THEN
    CREATE ROLE "$PGU" LOGIN PASSWORD '$PGPW' CREATEDB CREATEROLE;
  ELSE
    ALTER ROLE "$PGU" LOGIN PASSWORD '$PGPW' CREATEDB CREATEROLE;
  END IF;
END \$\$;
SQL
  for db in "$PGDB" "${PGDB}_test"; do
    if ! as_postgres psql -Atqc "select 1 from pg_database where datname='$db'" | grep -q 1; then
      as_postgres createdb -O "$PGU" "$db"
      log "created database $db"
    fi
  done
  reachable || { log "still not reachable at $PGH:$PGP as $PGU"; exit 1; }
  log "ready: $PGU@$PGH:$PGP/$PGDB"
}

case "${1:-}" in
  up) up ;;
  down|stop) read -r ver name < <(cluster); pg_ctlcluster "$ver" "$name" stop -m fast || true; log "stopped" ;;
  start) read -r ver name < <(cluster); pg_ctlcluster "$ver" "$name" start; log "started" ;;
  status) if reachable; then echo "up $PGH:$PGP/$PGDB"; else echo "down"; exit 1; fi ;;
  *) echo "usage: $0 up|down|stop|start|status" >&2; exit 2 ;;
esac
