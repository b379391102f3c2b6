#!/usr/bin/env bash
# End-to-end test of docker-compose.yml with real containers:
#   1 up, every plugin Running; a simulated Zigbee2MQTT device's state
#     reaches the history plugin over Mosquitto and the MQTT bridge
#   2 crash a plugin container: Crashed, restarted by its policy
#   3 pause: Crashed; unpause: Running
#   4 network cut: Crashed, events queued meanwhile, back, delivered
#   5 restart the host: plugins re-handshake, not restarted
#   6 down and up: the store's named volume keeps the state and retained events
#   7 down -v: nothing of the test left behind (also on failure)
# Skips (exit 0, with the reason) when no Docker engine answers. Bounded:
# every wait has a deadline, and the whole script runs under `timeout` in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  # A test that cannot run must not pass in CI.
  if [ "${CI:-}" = "true" ]; then
    echo "FAIL compose e2e: 'docker info' fails, no Docker engine is reachable (CI=true)" >&2
    exit 1
  fi
  echo "SKIP compose e2e: 'docker info' fails, no Docker engine is reachable"
  exit 0
fi
if command -v docker-compose >/dev/null 2>&1; then COMPOSE=(docker-compose); else COMPOSE=(docker compose); fi
project="iglue2e$$"
# A tag of its own, so that removing the test's image never touches the demo's.
export IGLU_TAG="$project"
P=("${COMPOSE[@]}" -p "$project")
profile="${IGLU_PROFILE:-debug}"

cleanup() {
  set +e
  if [ "${failed:-0}" = 1 ]; then
    echo "--- host log (last 60 lines) ---"; "${P[@]}" logs --no-color --tail 60 host 2>/dev/null
  fi
  "${P[@]}" down -v --remove-orphans --rmi all >/dev/null 2>&1
  left=$(docker ps -aq --filter "label=com.docker.compose.project=$project"; docker network ls -q --filter "label=com.docker.compose.project=$project"; docker volume ls -q --filter "label=com.docker.compose.project=$project")
  if [ -n "$left" ]; then echo "cleanup: removing leftovers: $left"; docker rm -f $left >/dev/null 2>&1; docker network rm $left >/dev/null 2>&1; docker volume rm $left >/dev/null 2>&1; fi
}
trap 'failed=1' ERR
trap cleanup EXIT INT TERM

step() { echo "== $*"; }
# status <plugin> <field>: one field of `iglu status --json`, read inside the host container.
status() {
  "${P[@]}" exec -T host iglu status --json 2>/dev/null |
    python3 -c "import json,sys; p=[x for x in json.load(sys.stdin) if x['id']=='$1']; print(p[0]['$2'] if p else '')" 2>/dev/null || true
}
# wait_for <seconds> <description> <command...>: polls until the command succeeds.
wait_for() {
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@"; do
    if [ $SECONDS -ge $end ]; then echo "FAILED: $what (after ${limit}s)"; failed=1; exit 1; fi
    sleep 0.2
  done
  echo "   ok: $what"
}
state_is() { [ "$(status "$1" state)" = "$2" ]; }
state_is_not() { local s; s=$(status "$1" state); [ -n "$s" ] && [ "$s" != "$2" ]; }
all_running() { for p in echo lights thermostat automation history mqtt-bridge; do state_is "$p" running || return 1; done; }
started_at() { docker inspect -f '{{.State.StartedAt}}' "$("${P[@]}" ps -q "$1")"; }

step "0. stage the image from target/$profile and build it"
deploy/stage-rootfs.sh "$profile"
"${P[@]}" build --quiet >/dev/null 2>&1

step "1. up: every plugin Running"
"${P[@]}" up -d >/dev/null 2>&1
wait_for 60 "all plugins running" all_running

step "1b. MQTT: the simulated Zigbee2MQTT's devices reach history through the broker and the bridge"
device() { "${P[@]}" exec -T host iglu call history query '{"topic":"home/+/thermometer/state","limit":1}' 2>/dev/null | grep -q '"temperature"'; }
wait_for 60 "a thermometer's state reached history" device
bridged() { "${P[@]}" exec -T host iglu status 2>/dev/null | grep -q '^mqtt-bridge: connected'; }
wait_for 30 "iglu status shows the bridge connected" bridged

step "2. crash a plugin container"
c=$("${P[@]}" ps -q thermostat)
restarts_before=$(docker inspect -f '{{.RestartCount}}' "$c")
# SIGKILL to the container's process, from outside: a real crash, which the
# restart policy handles. (docker kill is a manual stop to Docker: see README.)
kill -9 "$(docker inspect -f '{{.State.Pid}}' "$c")"
wait_for 30 "host saw the crash" sh -c "\"\$0\" \"\$@\" logs --no-color host 2>/dev/null | grep -q 'plugin=thermostat.*reason=connection lost'" "${P[@]}"
wait_for 60 "compose restarted it" sh -c "[ \$(docker inspect -f '{{.RestartCount}}' $c) -gt $restarts_before ]"
wait_for 60 "thermostat running again" state_is thermostat running
# And docker kill itself: the host marks it Crashed at once.
docker kill "$c" >/dev/null
wait_for 30 "docker kill: thermostat crashed" state_is_not thermostat running
"${P[@]}" start thermostat >/dev/null 2>&1
wait_for 60 "thermostat back after docker start" state_is thermostat running

step "3. pause: Crashed after the heartbeat timeout; unpause: Running"
"${P[@]}" pause automation >/dev/null 2>&1
wait_for 30 "paused automation crashed" state_is automation crashed
"${P[@]}" unpause automation >/dev/null 2>&1
wait_for 60 "automation running again" state_is automation running

step "4. network cut: Crashed, events queued meanwhile are delivered after reconnect"
net="${project}_home"
hc=$("${P[@]}" ps -q history)
docker network disconnect "$net" "$hc"
wait_for 30 "cut-off history crashed" state_is history crashed
"${P[@]}" exec -T host iglu publish home/e2e/marker '{"n":7}' >/dev/null
docker network connect --alias history "$net" "$hc"
wait_for 60 "history running again" state_is history running
delivered() { "${P[@]}" exec -T host iglu call history query '{"topic":"home/e2e/#","limit":5}' 2>/dev/null | grep -q '"n": 7'; }
wait_for 30 "the queued event reached history" delivered

step "5. restart the host: every plugin re-handshakes without being restarted"
before=$(for p in thermostat automation history; do started_at "$p"; done)
"${P[@]}" restart host >/dev/null 2>&1
wait_for 60 "all plugins running on the new host" all_running
after=$(for p in thermostat automation history; do started_at "$p"; done)
[ "$before" = "$after" ] || { echo "FAILED: plugin containers were restarted"; failed=1; exit 1; }
echo "   ok: plugin containers kept running"

step "6. down and up again: the store is a named volume, so the state survives"
"${P[@]}" exec -T host iglu call thermostat set_target '{"room":"e2e","celsius":12}' >/dev/null
"${P[@]}" exec -T host iglu publish --retain home/e2e/door '{"open":true}' >/dev/null
"${P[@]}" down >/dev/null 2>&1
"${P[@]}" up -d >/dev/null 2>&1
wait_for 60 "all plugins running after down/up" all_running
kept() { "${P[@]}" exec -T host iglu call thermostat room '{"room":"e2e"}' 2>/dev/null | grep -q '"target": 12'; }
wait_for 30 "the thermostat's target set before down" kept
retained() { "${P[@]}" exec -T host iglu call history query '{"topic":"home/e2e/door","limit":1}' 2>/dev/null | grep -q '"open": true'; }
wait_for 30 "the retained door state, given again on subscribe" retained

step "7. down (in the exit trap); checking nothing is left"
cleanup
trap - EXIT
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project"; docker network ls -q --filter "label=com.docker.compose.project=$project"; docker volume ls -q --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || { echo "FAILED: left behind: $left"; exit 1; }
echo "compose e2e: all steps passed"
