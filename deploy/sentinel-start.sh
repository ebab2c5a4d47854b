#!/bin/sh
# Starts one Redis Sentinel of docker-compose.ha.yml. Its configuration is written on the first
# start only: Sentinel keeps what it learns (the current master, the other Sentinels) in that
# file, which must survive a restart of the container.
set -eu

: "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
conf=/data/sentinel.conf
name=${REDIS_MASTER_NAME:-mnist}
if [ ! -f "$conf" ]; then
  cat >"$conf" <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel monitor $name ${SENTINEL_INITIAL_MASTER:-redis} 6379 ${SENTINEL_QUORUM:-2}
sentinel auth-pass $name $REDIS_PASSWORD
sentinel down-after-milliseconds $name ${SENTINEL_DOWN_AFTER_MS:-5000}
sentinel failover-timeout $name ${SENTINEL_FAILOVER_TIMEOUT_MS:-30000}
sentinel parallel-syncs $name 1
CONF
  chmod 600 "$conf"
fi
exec docker-entrypoint.sh redis-server "$conf" --sentinel
