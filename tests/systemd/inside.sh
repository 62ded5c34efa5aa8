#!/bin/sh
# tests/systemd/inside.sh: runs inside the container booted by
# tests/systemd/run, as the oneshot payhookd-systemd-test.service, against
# the payhookd installed from the Debian package and its own units.
# Each check prints "PASS name" or "FAIL name: why" to /results/log; the
# last line is "DONE passed=N failed=M". The unit powers the container off
# when this script ends.
set -u
R=/results
CONF=/etc/payhookd/payhookd.conf
DB=/var/lib/payhookd/payhookd.db
URL=http://127.0.0.1:8080/baidu/tp/events
passed=0
failed=0
: > "$R/booted"
exec >> "$R/log" 2>&1

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
prop() { systemctl show -p "$1" --value "$2"; }
# The number of stored events, read as the service's user (so no -shm or
# -wal file is ever created as root).
events() { runuser -u payhookd -- sqlite3 "$DB" "SELECT count(*) FROM events WHERE provider = 'baidu.tp'"; }
# POST one TP push signed with the keys of config $1; prints the answer.
post() { payhookctl -c "$1" sample baidu.tp --event "$2" --post "$URL"; }

echo "systemd $(systemctl --version | head -n 1 | cut -d' ' -f2), $(dpkg-query -W payhookd)"

# 1. systemctl enable --now payhookd.socket (as docs/operations.md says):
#    the socket listens, the service is not running until the first
#    connection.
if systemctl enable --now payhookd.socket && [ "$(systemctl is-active payhookd.socket)" = active ] &&
    [ "$(systemctl is-active payhookd.service)" = inactive ]; then
    pass socket
else
    fail socket "payhookd.socket $(systemctl is-active payhookd.socket), payhookd.service $(systemctl is-active payhookd.service)"
    systemctl status --no-pager payhookd.socket
fi

# 2. A callback through the socket starts the service and is stored.
out=$(post /root/old.conf PAYHOOKD_TEST_FIRST 2>&1); rc=$?
n=$(events 2>&1)
if [ $rc = 0 ] && [ "$(systemctl is-active payhookd.service)" = active ] && [ "$n" = 1 ]; then
    pass stored
else
    fail stored "payhookctl exit $rc ($out), service $(systemctl is-active payhookd.service), events $n"
    journalctl -u payhookd --no-pager | tail -n 30
fi

# 3. systemctl reload (SIGHUP, same main PID) swaps the TP token: the new
#    token is accepted, the old one refused.
pid=$(prop MainPID payhookd)
old=""
cp /root/new.conf "$CONF"
if ! systemctl reload payhookd; then
    fail reload "systemctl reload payhookd failed"
    journalctl -u payhookd --no-pager | tail -n 20
else
    # ExecReload= returns once SIGHUP is sent: give the swap a moment.
    i=0
    while :; do
        new=$(post /root/new.conf PAYHOOKD_TEST_NEW_TOKEN 2>&1); new_rc=$?
        i=$((i + 1)); [ $new_rc = 0 ] || [ $i -ge 20 ] && break
        sleep 0.5
    done
    old=$(post /root/old.conf PAYHOOKD_TEST_OLD_TOKEN 2>&1); old_rc=$?
    n=$(events 2>&1)
    if [ "$(prop MainPID payhookd)" = "$pid" ] && [ $new_rc = 0 ] && [ $old_rc != 0 ] &&
        [ "$n" = 2 ]; then
        pass reload
    else
        fail reload "main PID $pid -> $(prop MainPID payhookd), new token: exit $new_rc ($new), old token: exit $old_rc ($old), events $n"
    fi
fi
echo "  old token answered: $old"

# 4. nginx in front, set up as docs/operations.md says: the packaged
#    snippet as it is (no line changed), a certificate at the paths it
#    names. A callback from 127.0.0.2 through nginx is stored with that
#    address (nginx connects from 127.0.0.1, the trusted proxy), and
#    /metrics is refused to it while 127.0.0.1 gets it.
nginx_front() {
    site=/etc/nginx/sites-available/payhookd
    zcat -f /usr/share/doc/payhookd/nginx/payhookd.conf* > "$site" &&
        ln -s "$site" /etc/nginx/sites-enabled/ &&
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pay.example.com \
            -addext subjectAltName=DNS:pay.example.com \
            -keyout /etc/ssl/private/pay.example.com.key -out /etc/ssl/certs/pay.example.com.pem \
            2>/dev/null &&
        nginx -t 2>&1 && systemctl reload nginx
}
# GET or POST (with body file $3) https://pay.example.com$2 from address $1
# through nginx; prints the HTTP status, the answer goes to /root/answer.
via_nginx() {
    curl -sS -o /root/answer -w '%{http_code}' --cacert /etc/ssl/certs/pay.example.com.pem \
        --resolve pay.example.com:443:127.0.0.1 --interface "$1" \
        ${3:+-H 'Content-Type: application/json' --data-binary "@$3"} "https://pay.example.com$2"
}
if setup=$(nginx_front 2>&1); then
    payhookctl -c /root/new.conf sample baidu.tp --app-id 24600001 > /root/push.json
    code=$(via_nginx 127.0.0.2 /baidu/tp/events /root/push.json 2>&1)
    addr=$(runuser -u payhookd -- sqlite3 "$DB" "SELECT remote_addr FROM events WHERE app = '24600001'" 2>&1)
    outside=$(via_nginx 127.0.0.2 /metrics 2>&1)
    inside=$(via_nginx 127.0.0.1 /metrics 2>&1)
    if [ "$code" = 200 ] && [ "$addr" = 127.0.0.2 ] && [ "$outside" = 403 ] && [ "$inside" = 200 ] &&
        grep -q '^payhookd_' /root/answer; then
        pass nginx
    else
        fail nginx "callback via nginx: $code, stored remote_addr '$addr'; /metrics from 127.0.0.2: $outside, from 127.0.0.1: $inside"
        tail -n 5 /var/log/nginx/error.log
    fi
else
    fail nginx "setting nginx up as docs/operations.md says failed: $setup"
fi

# 5. The journal has payhookd's structured fields: the refused request's
#    PAYHOOK_ROUTE and PAYHOOK_REASON.
line=$(journalctl -u payhookd -o json --no-pager | grep '"PAYHOOK_REASON"' |
    grep '"PAYHOOK_ROUTE":"/baidu/tp/events"' | tail -n 1)
if [ -n "$line" ]; then
    pass journal
    echo "  $(echo "$line" | grep -o '"PAYHOOK_[A-Z]*":"[^"]*"' | tr '\n' ' ')"
else
    fail journal "no journal entry of payhookd.service with PAYHOOK_ROUTE=/baidu/tp/events and PAYHOOK_REASON"
    journalctl -u payhookd -o json --no-pager | tail -n 5
fi

# 6. The watchdog: a stopped (hung) main process is killed and restarted
#    by systemd (WatchdogSec= in the installed unit, Restart=on-failure).
wd=$(prop WatchdogUSec payhookd)
restarts=$(prop NRestarts payhookd)
pid=$(prop MainPID payhookd)
kill -STOP "$pid"
t=0
while [ $t -lt 150 ]; do
    sleep 2; t=$((t + 2))
    now=$(prop MainPID payhookd)
    [ "$now" != 0 ] && [ "$now" != "$pid" ] && [ "$(systemctl is-active payhookd)" = active ] && break
done
after=$(prop NRestarts payhookd)
out=$(post /root/new.conf PAYHOOKD_TEST_AFTER_WATCHDOG 2>&1); rc=$?
if [ "$wd" != 0 ] && [ "$(prop MainPID payhookd)" != "$pid" ] && [ "$after" = $((restarts + 1)) ] &&
    journalctl -u payhookd --no-pager | grep -q 'Watchdog timeout' && [ $rc = 0 ]; then
    pass watchdog
else
    fail watchdog "WatchdogUSec $wd, main PID $pid -> $(prop MainPID payhookd), NRestarts $restarts -> $after, after restart: exit $rc ($out)"
    journalctl -u payhookd --no-pager | tail -n 20
fi
echo "  WatchdogUSec=$wd; restarted after ${t}s; NRestarts $restarts -> $after"

# 7. systemctl stop drains: the main process exits 0 on SIGTERM, and what
#    was acknowledged is in the store.
n=$(events 2>&1)
systemctl stop payhookd.service
code=$(prop ExecMainCode payhookd); status=$(prop ExecMainStatus payhookd)
result=$(prop Result payhookd); m=$(events 2>&1)
# ExecMainCode 1 is CLD_EXITED (2 would be "killed by a signal").
if [ "$code" = 1 ] && [ "$status" = 0 ] && [ "$result" = success ] && [ "$m" = "$n" ]; then
    pass stop
else
    fail stop "ExecMainCode $code, ExecMainStatus $status, Result $result, events $n -> $m"
    journalctl -u payhookd --no-pager | tail -n 20
fi
cp "$DB" "$R/payhookd.db" 2>/dev/null

echo "DONE passed=$passed failed=$failed"
