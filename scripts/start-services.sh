#!/usr/bin/env bash
# Start PostgreSQL (127.0.0.1:5432, trust auth, database "test"), MariaDB
# (127.0.0.1:3306, passwordless root, database "test") and a two-shard
# ClickHouse cluster (native 127.0.0.1:9000 and :9001, user "default" without a
# password, cluster "asynchdb", tables default.asynchdb_local on each server and
# default.asynchdb_dist, a Distributed table over both) when they do not answer.
# Used by .ci/run; safe to run again.  Needs root on Debian; installs the server
# packages (postgresql, mariadb-server, clickhouse-server) when missing.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.2; done
    echo "start-services: nothing answers on 127.0.0.1:$1" >&2
    return 1
}

if ! port_open 5432; then
    if ! command -v pg_ctlcluster >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    ver=$(ls /etc/postgresql | sort -n | tail -1)
    conf=/etc/postgresql/$ver/main/pg_hba.conf
    grep -q "asynchdb-trust" "$conf" 2>/dev/null || {
        printf '# asynchdb-trust\nhost all all 127.0.0.1/32 trust\nlocal all all trust\n' | cat - "$conf" > "$conf.new"
        mv "$conf.new" "$conf"; chown postgres "$conf"
    }
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    wait_port 5432
fi
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null

if ! port_open 3306; then
    if ! command -v mariadbd >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
    fi
    if [ ! -d /var/lib/mysql/mysql ]; then
        mariadb-install-db --user=mysql --auth-root-authentication-method=normal >/dev/null
    fi
    mkdir -p /run/mysqld && chown mysql /run/mysqld
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_port 3306
fi
mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS test" >/dev/null

# -- ClickHouse: two servers on one machine, one shard each ------------------
# Debian's clickhouse-server (18.16).  Each server gets its own ports and its own
# folders under $CH_ROOT; both know the cluster "asynchdb" (remote_servers), so a
# Distributed table on either fans a query out to both shards.
CH_ROOT=${ASYNCHDB_CLICKHOUSE_ROOT:-${TMPDIR:-/tmp}/asynchdb-clickhouse}
CH_NATIVE=(9000 9001)
CH_HTTP=(8123 8124)
CH_INTERSERVER=(9009 9010)
CH_ROWS=1000000   # rows per shard in asynchdb_local (odd x on shard 1, even x on shard 2)

ch() { clickhouse-client --host 127.0.0.1 --port "$1" --query "$2"; }
ch_answers() { port_open "$1" && ch "$1" "SELECT 1" >/dev/null 2>&1; }

ch_config() {  # $1 = index 0 or 1
    local dir=$CH_ROOT/s$(( $1 + 1 ))
    mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas"
    cat > "$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/server.log</log>
        <errorlog>$dir/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>${CH_NATIVE[$1]}</tcp_port>
    <http_port>${CH_HTTP[$1]}</http_port>
    <interserver_http_port>${CH_INTERSERVER[$1]}</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <remote_servers>
        <asynchdb>
            <shard><replica><host>127.0.0.1</host><port>${CH_NATIVE[0]}</port></replica></shard>
            <shard><replica><host>127.0.0.1</host><port>${CH_NATIVE[1]}</port></replica></shard>
        </asynchdb>
    </remote_servers>
</yandex>
XML
    chown -R clickhouse:clickhouse "$dir" 2>/dev/null || true
}

if ! ch_answers "${CH_NATIVE[0]}" || ! ch_answers "${CH_NATIVE[1]}"; then
    if ! command -v clickhouse-server >/dev/null || ! command -v clickhouse-client >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends clickhouse-server clickhouse-client >/dev/null
    fi
    for i in 0 1; do
        ch_answers "${CH_NATIVE[$i]}" && continue
        ch_config "$i"
        dir=$CH_ROOT/s$(( i + 1 ))
        user=()
        id clickhouse >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && user=(--chuid clickhouse)
        start-stop-daemon --start --background "${user[@]}" --chdir "$dir" \
            --make-pidfile --pidfile "$dir/server.pid" \
            --exec "$(command -v clickhouse-server)" -- --config-file="$dir/config.xml"
    done
    for i in 0 1; do
        for _ in $(seq 1 150); do ch_answers "${CH_NATIVE[$i]}" && break; sleep 0.2; done
        ch_answers "${CH_NATIVE[$i]}" || {
            echo "start-services: ClickHouse does not answer on 127.0.0.1:${CH_NATIVE[$i]}" >&2
            tail -5 "$CH_ROOT/s$(( i + 1 ))/server.err.log" >&2 2>/dev/null || true
            exit 1
        }
    done
fi
# the tables (each statement is idempotent; the rows are filled once per shard)
for i in 0 1; do
    port=${CH_NATIVE[$i]}
    ch "$port" "CREATE TABLE IF NOT EXISTS default.asynchdb_local (x UInt64) ENGINE = MergeTree ORDER BY x"
    ch "$port" "CREATE TABLE IF NOT EXISTS default.asynchdb_dist (x UInt64) ENGINE = Distributed(asynchdb, default, asynchdb_local)"
    if [ "$(ch "$port" "SELECT count() FROM default.asynchdb_local")" != "$CH_ROWS" ]; then
        ch "$port" "TRUNCATE TABLE default.asynchdb_local"
        ch "$port" "INSERT INTO default.asynchdb_local SELECT number * 2 + $(( i + 1 )) FROM system.numbers LIMIT $CH_ROWS"
    fi
done
echo "start-services: PostgreSQL, MariaDB and ClickHouse (2 shards) answer on 127.0.0.1"
