#!/bin/sh
# Entrypoint of every Shop image. `serve` (the default command) applies the migrations
# (`python -m $SERVICE_PACKAGE prestart`: Alembic under a MySQL GET_LOCK, so replicas that
# start together take turns and the later ones find the schema at head), then execs gunicorn
# with common/gunicorn_conf.py (workers from WEB_CONCURRENCY). Any other command runs as given,
# e.g. `python -m order_service worker` for the outbox relay.
#
# PRESTART_SECRETS names settings only prestart needs (compose's user service: the admin and
# service passwords it ensures accounts with); the server is started without them or their
# *_FILE variables, so the running service never holds them.
set -eu

# sysexits' EX_CONFIG, prestart's answer to a refused setting: retrying cannot help.
EXIT_CONFIGURATION=78

if [ "$#" -eq 0 ] || [ "$1" = "serve" ]; then
    if [ "${RUN_MIGRATIONS:-1}" = "1" ]; then
        # Retried, a few seconds apart: the database may still be starting, and replicas that
        # start together on an empty user database race to create the configured accounts
        # (the losers' retry finds them). Migrations themselves are no-ops at head.
        attempt=1
        while :; do
            status=0
            python -m "${SERVICE_PACKAGE}" prestart || status=$?
            if [ "$status" -eq 0 ]; then
                break
            fi
            if [ "$status" -eq "$EXIT_CONFIGURATION" ]; then
                echo "shop-entrypoint: the configuration above is refused; not retrying" >&2
                exit "$status"
            fi
            if [ "$attempt" -ge "${PRESTART_ATTEMPTS:-5}" ]; then
                echo "shop-entrypoint: prestart failed $attempt times; giving up" >&2
                exit 1
            fi
            attempt=$((attempt + 1))
            sleep 3
        done
    fi
    for name in ${PRESTART_SECRETS:-}; do
        unset "$name" "${name}_FILE"
    done
    unset PRESTART_SECRETS
    exec gunicorn -c python:common.gunicorn_conf --bind "0.0.0.0:${PORT}" \
        "${SERVICE_PACKAGE}.app:create_app()"
fi
exec "$@"
