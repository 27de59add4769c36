#!/usr/bin/env bash
# A real Zipkin server for tracing (the seeds' "View in Zipkin" step) and for the tests that read
# traces back: zipkin-server's executable jar from Maven Central (fetched once by Maven into
# ~/.m2 and copied under var/zipkin), run with the machine's JDK, in-memory storage, listening on
# 127.0.0.1 only.
#
#   tools/zipkin.sh [start]   fetch if needed, start unless running, wait until healthy
#   tools/zipkin.sh stop
#   tools/zipkin.sh jar       fetch if needed, print the jar's path
#
# ZIPKIN_PORT (default 9411, Zipkin's and Dapr's default) picks the port.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=3.6.1
PORT=${ZIPKIN_PORT:-9411}
DIR=$PWD/var/zipkin
JAR=$DIR/zipkin-server-$VERSION-exec.jar
PIDFILE=$DIR/zipkin-$PORT.pid

fetch() {
  [ -f "$JAR" ] && return
  command -v java >/dev/null || { echo "zipkin needs a JDK (java 17+)" >&2; exit 1; }
  command -v mvn >/dev/null || { echo "zipkin needs Maven to fetch its jar" >&2; exit 1; }
  mkdir -p "$DIR"
  echo "fetching zipkin-server $VERSION from Maven Central" >&2
  mvn -q dependency:copy -Dartifact="io.zipkin:zipkin-server:$VERSION:jar:exec" \
    -DoutputDirectory="$DIR" >&2
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-start}" in
  jar) fetch; echo "$JAR" ;;
  stop)
    if running; then kill "$(cat "$PIDFILE")"; fi
    rm -f "$PIDFILE" ;;
  start)
    fetch
    if ! running; then
      # Armeria's own port settings: Spring's server.address does not bind Zipkin 3 to loopback.
      nohup java -Xmx512m -jar "$JAR" "--armeria.ports[0].port=$PORT" \
        "--armeria.ports[0].ip=127.0.0.1" "--armeria.ports[0].protocols=http" \
        >"$DIR/zipkin-$PORT.log" 2>&1 &
      echo $! >"$PIDFILE"
    fi
    for _ in $(seq 1 120); do
      if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then
        echo "Zipkin on http://127.0.0.1:$PORT/zipkin/" >&2
        exit 0
      fi
      running || { echo "zipkin exited; see $DIR/zipkin-$PORT.log" >&2; exit 1; }
      sleep 0.5
    done
    echo "zipkin did not become healthy in 60 s; see $DIR/zipkin-$PORT.log" >&2
    exit 1 ;;
  *) echo "usage: $0 [start|stop|jar]" >&2; exit 2 ;;
esac
