#!/usr/bin/env bash
# Make sure MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379) answer, then create the
# database `matchd`. A server that already answers is used as it is; one that does not
# is started without systemd (none may be running here). Never waits more than
# WAIT_SECONDS per server. Install the servers first with scripts/bootstrap.sh.
set -euo pipefail

HOST=127.0.0.1
MYSQL_PORT=3306
REDIS_PORT=6379
DATABASE=matchd
WAIT_SECONDS=30
LOG_DIR=/var/log/matchd-services

say() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: warning: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

# A TCP connect to $1:$2 succeeds within 2 s.
tcp_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

mysql_client() {
    if have mariadb; then echo mariadb; elif have mysql; then echo mysql; fi
}

mysql_answers() {
    tcp_open "$HOST" "$MYSQL_PORT" || return 1
    # `ping` succeeds whenever the server runs, even if it refuses our login.
    if have mariadb-admin; then
        timeout 5 mariadb-admin --protocol=tcp -h "$HOST" -P "$MYSQL_PORT" -u root \
            --connect-timeout=2 ping >/dev/null 2>&1
    elif have mysqladmin; then
        timeout 5 mysqladmin --protocol=tcp -h "$HOST" -P "$MYSQL_PORT" -u root \
            --connect-timeout=2 ping >/dev/null 2>&1
    fi
}

redis_answers() {
    tcp_open "$HOST" "$REDIS_PORT" || return 1
    if have redis-cli; then
        [[ "$(timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
    fi
}

# wait_for NAME CHECK: poll CHECK every half second for up to WAIT_SECONDS.
wait_for() {
    local name=$1 check=$2 deadline=$((SECONDS + WAIT_SECONDS))
    while ((SECONDS < deadline)); do
        if "$check"; then
            say "$name answers"
            return 0
        fi
        sleep 0.5
    done
    warn "$name did not answer within ${WAIT_SECONDS}s"
    return 1
}

mysql_datadir() {
    local dir=""
    if have my_print_defaults; then
        dir="$(my_print_defaults --mysqld 2>/dev/null | sed -n 's/^--datadir=//p' | tail -n 1)"
    fi
    echo "${dir:-/var/lib/mysql}"
}

start_mariadb() {
    local server=/usr/sbin/mariadbd datadir install_db=""
    [[ -x "$server" ]] || server=/usr/sbin/mysqld
    [[ -x "$server" ]] || die "MariaDB is not installed (run scripts/bootstrap.sh as root)"
    ((EUID == 0)) || die "MariaDB does not answer on $HOST:$MYSQL_PORT and only root can start it"
    id mysql >/dev/null 2>&1 || die "there is no 'mysql' user: reinstall mariadb-server"
    datadir="$(mysql_datadir)"
    if [[ ! -d "$datadir/mysql" ]]; then
        if have mariadb-install-db; then install_db=mariadb-install-db
        elif have mysql_install_db; then install_db=mysql_install_db
        else die "$datadir is empty and neither mariadb-install-db nor mysql_install_db exists"
        fi
        say "initialising the MariaDB data directory $datadir"
        mkdir -p "$datadir"
        chown mysql:mysql "$datadir"
        # root may log in without a password (loopback only): a development server.
        "$install_db" --user=mysql --datadir="$datadir" \
            --auth-root-authentication-method=normal --skip-test-db >/dev/null
    fi
    mkdir -p /run/mysqld "$LOG_DIR"
    chown mysql:mysql /run/mysqld
    say "starting MariaDB ($server, log $LOG_DIR/mariadb.log)"
    start-stop-daemon --start --oknodo --background --output "$LOG_DIR/mariadb.log" \
        --exec "$server" -- --user=mysql
}

start_redis() {
    have redis-server || die "Redis is not installed (run scripts/bootstrap.sh as root)"
    local dir=/var/lib/redis
    [[ -d "$dir" && -w "$dir" ]] || dir="${TMPDIR:-/tmp}"
    local log="$dir/matchd-redis.log"
    say "starting Redis on $HOST:$REDIS_PORT (no persistence, log $log)"
    redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$dir" --logfile "$log"
}

create_database() {
    local client
    client="$(mysql_client)"
    [[ -n "$client" ]] || { warn "no mariadb/mysql client: database $DATABASE not created"; return 1; }
    local sql="CREATE DATABASE IF NOT EXISTS \`$DATABASE\` CHARACTER SET utf8mb4"
    if timeout 20 "$client" --protocol=tcp -h "$HOST" -P "$MYSQL_PORT" -u root \
        --connect-timeout=5 -e "$sql" 2>/dev/null; then
        say "database $DATABASE ready (root over $HOST:$MYSQL_PORT)"
        return 0
    fi
    # A Debian-packaged server lets root in over the Unix socket only (unix_socket auth).
    if ((EUID == 0)) && timeout 20 "$client" --protocol=socket -u root --connect-timeout=5 \
        -e "$sql" 2>/dev/null; then
        say "database $DATABASE ready (root over the Unix socket)"
        warn "root cannot log in over $HOST:$MYSQL_PORT without a password; tests that use" \
            "MariaDB need it: e.g. $client -u root -e \"ALTER USER root@localhost" \
            "IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')\""
        return 0
    fi
    warn "could not create database $DATABASE as root (no password) on $HOST:$MYSQL_PORT"
    return 1
}

status=0

if mysql_answers; then
    say "MariaDB already answers on $HOST:$MYSQL_PORT: using it"
else
    start_mariadb
    wait_for "MariaDB on $HOST:$MYSQL_PORT" mysql_answers || status=1
fi
if ((status == 0)); then
    create_database || status=1
fi

if redis_answers; then
    say "Redis already answers on $HOST:$REDIS_PORT: using it"
else
    start_redis
    wait_for "Redis on $HOST:$REDIS_PORT" redis_answers || status=1
fi

if ((status != 0)); then
    die "a service is not ready (see the messages above)"
fi
say "MariaDB and Redis ready"
