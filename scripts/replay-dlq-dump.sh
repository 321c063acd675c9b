#!/usr/bin/env bash
# Replay a DLQ dump (`qchem-events dlq list --type T --json > dump.json`) into a topic with
# Kafka's own kafka-console-producer (org.apache.kafka.tools.ConsoleProducer, from the jars
# infra/kafka.sh resolved), keys and headers preserved - including the origin headers, so the
# consumer's dedup still recognises events whose effect was already applied.
#   scripts/replay-dlq-dump.sh dump.json qchem.email [bootstrap]
# Records whose key, value or headers are not UTF-8 text cannot go through the console
# producer; they are reported and skipped (use `qchem-events dlq replay` for those).
source "$(dirname "${BASH_SOURCE[0]}")/../infra/lib.sh"
file="${1:?usage: $0 DUMP.json TOPIC [BOOTSTRAP]}"
topic="${2:?usage: $0 DUMP.json TOPIC [BOOTSTRAP]}"
bootstrap="${3:-${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}}"
libs="$KAFKA_HOME_DIR/libs"
[[ -d "$libs" ]] || "$ROOT/infra/kafka.sh" fetch-jars
python3 "$ROOT/scripts/dlq_dump_to_console.py" "$file" | java -cp "$libs/*" \
  -Dlog4j2.configurationFile="$ROOT/scripts/console-log4j2.properties" \
  org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$bootstrap" --topic "$topic" \
  --property parse.key=true --property key.separator=$'\t' \
  --property parse.headers=true --property headers.delimiter=$'\t' \
  --property headers.separator=$'\x1e' --property headers.key.separator=$'\x1f'
