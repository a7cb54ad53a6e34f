#!/usr/bin/env bash
# Start a real MongoDB with Docker for the CI jobs that test against one, and print the
# URL to use as MONGODB_URL. Every wait fails the step (non-zero exit, the server's log
# shown) when the server never becomes ready.
#
#   bash scripts/mongo-docker.sh replset [image]   one-member replica set on localhost:27017
#   bash scripts/mongo-docker.sh sharded [image]   config server replica set, two shard replica
#                                                  sets and a mongos on localhost:27017
#   bash scripts/mongo-docker.sh stop              remove what either command started
set -euo pipefail

MODE=${1:?usage: mongo-docker.sh replset|sharded|stop [image]}
IMAGE=${2:-mongo:8}
NET=cqrs-mongo-net
PREFIX=cqrs-mongo-
TIMEOUT_S=${MONGO_READY_TIMEOUT_S:-90}

say() { echo "mongo-docker: $*" >&2; }

# mongosh inside container $1, evaluating $2; quiet, one attempt.
eval_in() { docker exec "$PREFIX$1" mongosh --quiet --port 27017 --eval "$2"; }

# Retry `eval_in $1 $2` until its output contains $3, or fail with the container's log.
wait_for() {
  local name=$1 script=$2 expected=$3 deadline=$(( $(date +%s) + TIMEOUT_S )) out=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    out=$(eval_in "$name" "$script" 2>&1 || true)
    if grep -qx -- "$expected" <<<"$out"; then return 0; fi
    if [ "$(docker inspect -f '{{.State.Running}}' "$PREFIX$name" 2>/dev/null)" != true ]; then
      break
    fi
    sleep 1
  done
  say "$name: no '$expected' within ${TIMEOUT_S}s from: $script"
  say "last answer: $out"
  docker logs --tail 50 "$PREFIX$name" >&2 || true
  exit 1
}

# Start container $1 running `$IMAGE $2...`, reachable as host $1 on the Docker network.
start() {
  local name=$1; shift
  docker run -d --name "$PREFIX$name" --hostname "$name" --network "$NET" --network-alias "$name" "$@" >/dev/null
}

# A replica set $1 of one member (container $1) running `mongod $2...`, initiated and primary.
replica_set() {
  local name=$1 host=$2; shift 2
  start "$name" "$@"
  wait_for "$name" 'db.runCommand({ping: 1}).ok' '1'
  local config="{_id: '$name', members: [{_id: 0, host: '$host'}]}"
  if [[ " $* " == *" --configsvr "* ]]; then config="{_id: '$name', configsvr: true, members: [{_id: 0, host: '$host'}]}"; fi
  eval_in "$name" "rs.initiate($config).ok" >/dev/null
  wait_for "$name" 'db.hello().isWritablePrimary' 'true'
}

stop() {
  local ids
  ids=$(docker ps -aq --filter "name=^$PREFIX")
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  docker network rm "$NET" >/dev/null 2>&1 || true
}

case "$MODE" in
  stop)
    stop
    ;;
  replset)
    stop
    docker network create "$NET" >/dev/null
    # the member's host name is what clients connect to after discovery: localhost from the runner
    replica_set rs0 localhost:27017 -p 27017:27017 "$IMAGE" --replSet rs0 --bind_ip_all --port 27017
    echo "mongodb://localhost:27017/?replicaSet=rs0"
    ;;
  sharded)
    stop
    docker network create "$NET" >/dev/null
    replica_set cfg cfg:27017 "$IMAGE" --configsvr --replSet cfg --bind_ip_all --port 27017
    replica_set sh1 sh1:27017 "$IMAGE" --shardsvr --replSet sh1 --bind_ip_all --port 27017
    replica_set sh2 sh2:27017 "$IMAGE" --shardsvr --replSet sh2 --bind_ip_all --port 27017
    start mongos -p 27017:27017 "$IMAGE" mongos --configdb cfg/cfg:27017 --bind_ip_all --port 27017
    wait_for mongos 'db.runCommand({ping: 1}).ok' '1'
    eval_in mongos 'sh.addShard("sh1/sh1:27017").ok' >/dev/null
    eval_in mongos 'sh.addShard("sh2/sh2:27017").ok' >/dev/null
    wait_for mongos 'db.getSiblingDB("config").shards.countDocuments({})' '2'
    echo "mongodb://localhost:27017/"
    ;;
  *)
    say "unknown mode '$MODE': expected replset, sharded or stop"
    exit 2
    ;;
esac
