#!/usr/bin/env bash
# Replay a file of JSON events (one per line, as `qchem-events sample` prints them) into a
# topic with kcat, keyed by each event's "key" field (so per-key order and partitioning hold).
#   scripts/replay-events.sh events.jsonl qchem.email [bootstrap]
set -euo pipefail
file="${1:?usage: $0 FILE TOPIC [BOOTSTRAP]}"
topic="${2:?usage: $0 FILE TOPIC [BOOTSTRAP]}"
bootstrap="${3:-${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}}"
command -v kcat >/dev/null || { echo "kcat is required (apt-get install kcat)" >&2; exit 2; }
python3 - "$file" <<'PY' | kcat -P -b "$bootstrap" -t "$topic" -K $'\x1f'
import json, sys
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    line = line.strip()
    if not line:
        continue
    try:
        key = json.loads(line).get("key", "")
    except (ValueError, AttributeError):
        key = ""  # malformed lines are replayed as they are: the consumer dead-letters them
        print(f"line {n}: not a JSON object, sent without a key", file=sys.stderr)
    print(f"{key}\x1f{line}")
PY
echo "replayed $(grep -c . "$file") line(s) from $file to $topic" >&2
