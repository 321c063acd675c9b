#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) from Maven Central jars - no Docker.
#   infra/kafka.sh up|down|status|wait
# Jars, data and logs live under .local/kafka (git-ignored). `up` is idempotent: when the
# bootstrap address already answers (ours or anybody's broker), nothing is started.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SERVICE=kafka
HOME_DIR="$KAFKA_HOME_DIR"
LIBS="$HOME_DIR/libs"
DATA="$HOME_DIR/data"
LOGS="$HOME_DIR/logs"
PIDFILE="$HOME_DIR/kafka.pid"
PORT="${QCHEM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${QCHEM_KAFKA_CONTROLLER_PORT:-9093}"
HEAP="${QCHEM_KAFKA_HEAP:-512m}"
TIMEOUT="${QCHEM_KAFKA_START_TIMEOUT:-90}"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
broker_answers() { port_open "$PORT"; }

fetch_jars() {
  if [[ -f "$LIBS/.complete" ]]; then return; fi
  log "resolving Apache Kafka jars from Maven Central (infra/kafka/pom.xml) ..."
  mkdir -p "$LIBS"
  mvn -q -B -f "$ROOT/infra/kafka/pom.xml" dependency:copy-dependencies -Dlibs.dir="$LIBS" >&2
  touch "$LIBS/.complete"
  log "$(ls "$LIBS"/kafka_2.13-*.jar | xargs -n1 basename) and $(ls "$LIBS" | wc -l) jars in $LIBS"
}

write_config() {
  mkdir -p "$DATA" "$LOGS"
  cat > "$HOME_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=3
group.initial.rebalance.delay.ms=0
# KIP-848 consumer groups (group.protocol=consumer): the broker owns session timeout and
# heartbeat. Its defaults (45 s, 5 s) would leave a crashed instance's partitions unserved for
# 45 s; production brokers should be tuned the same way (README "Running at scale").
group.consumer.session.timeout.ms=10000
group.consumer.min.session.timeout.ms=6000
group.consumer.heartbeat.interval.ms=1000
group.consumer.min.heartbeat.interval.ms=1000
log.retention.check.interval.ms=60000
PROPS
  cat > "$HOME_DIR/log4j2.properties" <<'L4J'
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
L4J
}

java_run() {
  java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HOME_DIR/log4j2.properties" -Dkafka.logs.dir="$LOGS" \
    -cp "$LIBS/*" "$@"
}

up() {
  if port_open "$PORT"; then
    log "a broker already answers on 127.0.0.1:$PORT - starting nothing"; return 0
  fi
  if pid="$(running_pid)"; then
    log "broker process $pid is starting - waiting"; wait_ready; return
  fi
  fetch_jars
  write_config
  if [[ ! -f "$DATA/meta.properties" ]]; then
    local cid; cid="$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    java_run kafka.tools.StorageTool format -t "$cid" -c "$HOME_DIR/server.properties" -g >"$LOGS/format.log" 2>&1
    log "formatted KRaft storage (cluster id $cid)"
  fi
  local started; started=$(date +%s.%N)
  # setsid: the broker must outlive the shell (make, CI step) that started it.
  setsid bash -c 'exec "$@"' _ java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HOME_DIR/log4j2.properties" -Dkafka.logs.dir="$LOGS" -cp "$LIBS/*" kafka.Kafka "$HOME_DIR/server.properties" >"$LOGS/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  log "started broker pid $! from Maven jars ($LIBS)"
  wait_ready
  log "ready on 127.0.0.1:$PORT after $(echo "$(date +%s.%N) - $started" | bc -l | xargs printf '%.1f')s"
}

wait_ready() { wait_until broker_answers 0.3 20 "$LOGS/stdout.log" "$LOGS/server.log"; }

case "${1:-}" in
  up) up ;;
  down) stop_service ;;
  kill) pid="$(running_pid)" && kill -9 "$pid" && log "killed pid $pid" ;;  # fault tests
  reset) stop_service; rm -rf "$DATA"; log "data wiped" ;;
  status) if port_open "$PORT"; then echo "up 127.0.0.1:$PORT"; else echo "down"; exit 1; fi ;;
  wait) wait_ready ;;
  fetch-jars) fetch_jars ;;
  *) echo "usage: $0 up|down|kill|reset|status|wait|fetch-jars" >&2; exit 2 ;;
esac
