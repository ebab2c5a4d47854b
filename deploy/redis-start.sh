#!/bin/sh
# Starts a Redis node of the compose setups (docker-compose.yml, docker-compose.ha.yml) from
# deploy/redis.conf, mounted at /etc/mnist/redis.conf. The password and the memory limit come
# from the environment (REDIS_PASSWORD, REDIS_MAXMEMORY), so no image holds them; they are
# written into a private copy of the file, not onto the command line where `ps` shows them.
#
# With Sentinel (REDIS_SENTINELS set), a node that starts asks the Sentinels which node is the
# master and, if that is another node, starts as its replica: a master that died and comes
# back must not accept writes as a second master. With no Sentinel answering (the first
# start), REDIS_REPLICA_OF names the master, or the node starts as the master.
set -eu

: "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
conf=/data/redis.conf
# A fresh copy at each start: Sentinel rewrites the file of a node it reconfigures.
cp /etc/mnist/redis.conf "$conf"
{
  printf 'requirepass "%s"\nmasterauth "%s"\n' "$REDIS_PASSWORD" "$REDIS_PASSWORD"
  printf 'maxmemory %s\n' "${REDIS_MAXMEMORY:-512mb}"
  printf 'dir /data\n'
} >>"$conf"
chmod 600 "$conf"

ask_sentinels() {
  for sentinel in $(echo "$REDIS_SENTINELS" | tr ',' ' '); do
    answer=$(redis-cli -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
      SENTINEL get-master-addr-by-name "${REDIS_MASTER_NAME:-mnist}" 2>/dev/null | head -n 1) || true
    if [ -n "$answer" ]; then
      echo "$answer"
      return 0
    fi
  done
  return 1
}

master=""
if [ -n "${REDIS_SENTINELS:-}" ]; then
  # Sentinels answer with hostnames (announce-hostnames): each node announces its own.
  printf 'replica-announce-ip %s\n' "${REDIS_ANNOUNCE_HOST:?set REDIS_ANNOUNCE_HOST}" >>"$conf"
  # A node with data of its own may have been (or may be) the master since a failover: it
  # waits for the Sentinels (they may be starting too) rather than guess its role from the
  # compose file. A fresh node has nothing to lose, and the Sentinels wait for it.
  tries=1
  if [ -d /data/appendonlydir ]; then tries=${REDIS_SENTINEL_WAIT_SECONDS:-30}; fi
  while [ "$tries" -gt 0 ]; do
    if master=$(ask_sentinels); then break; fi
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] && sleep 1
  done
  if [ -z "$master" ]; then
    echo "redis-start: no Sentinel answered; starting in the role the compose file gives"
    master=${REDIS_REPLICA_OF:-}
  fi
fi
if [ -n "$master" ] && [ "$master" != "${REDIS_ANNOUNCE_HOST:-}" ]; then
  echo "redis-start: starting as a replica of $master"
  printf 'replicaof %s 6379\n' "$master" >>"$conf"
fi

exec docker-entrypoint.sh redis-server "$conf"
