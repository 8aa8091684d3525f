#!/usr/bin/env bash
# Start PostgreSQL (127.0.0.1:5432, trust auth, database "test") and MariaDB
# (127.0.0.1:3306, passwordless root, database "test") when they do not answer.
# Used by .ci/run; safe to run again.  Needs root on Debian with the server
# packages installed (postgresql, mariadb-server).
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
echo "start-services: PostgreSQL and MariaDB answer on 127.0.0.1"
