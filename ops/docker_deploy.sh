#!/usr/bin/env bash
# shellcheck disable=SC2029  # remote command strings are meant to expand on this side
# Local side of the Docker deployment; ops/deploy.mk calls one action per make target.
#
#   ops/docker_deploy.sh setup|deploy|deploy-code|status|logs|restart|ssh|ssl-init
#   ops/docker_deploy.sh migrate-data LEGACY_SQLITE [LEGACY_JSON_DIR]
#
# Reads .env.deploy (never committed, never synced):
#   DEPLOY_SSH_KEY=~/.ssh/id_ed25519  DEPLOY_USER=root  DEPLOY_HOST=203.0.113.10
#   DEPLOY_REMOTE_DIR=/opt/nifty-engine
set -euo pipefail

cd "$(dirname "$0")/.."

ENV_FILE="${DEPLOY_ENV_FILE:-.env.deploy}"
if [[ ! -f "${ENV_FILE}" ]]; then
    echo "docker_deploy.sh: ${ENV_FILE} not found (DEPLOY_SSH_KEY, DEPLOY_USER, DEPLOY_HOST, DEPLOY_REMOTE_DIR)" >&2
    exit 1
fi
set -a
# shellcheck disable=SC1090  # path chosen at run time
. "${ENV_FILE}"
set +a

for var in DEPLOY_SSH_KEY DEPLOY_USER DEPLOY_HOST DEPLOY_REMOTE_DIR; do
    if [[ -z "${!var:-}" ]]; then
        echo "docker_deploy.sh: ${var} is empty in ${ENV_FILE}" >&2
        exit 1
    fi
done

KEY="${DEPLOY_SSH_KEY/#\~/${HOME}}"
TARGET="${DEPLOY_USER}@${DEPLOY_HOST}"
DIR="${DEPLOY_REMOTE_DIR}"
SSH_OPTS=(-i "${KEY}" -o IdentitiesOnly=yes -o ServerAliveInterval=30)

remote() {
    # Run a command string in the deploy directory on the server.
    ssh "${SSH_OPTS[@]}" "${TARGET}" "cd '${DIR}' && $*"
}

sync_code() {
    echo "==> rsync to ${TARGET}:${DIR}"
    rsync -az --delete \
        --exclude '.env' --exclude '.env.deploy' --exclude '.env.*.local' \
        --exclude 'var/' --exclude 'logs/' --exclude '.venv/' --exclude '.git/' \
        --exclude '*.sqlite3' --exclude '*.sqlite3-*' \
        --exclude '__pycache__/' --exclude '.pytest_cache/' --exclude '.ruff_cache/' \
        --exclude '.hypothesis/' --exclude 'test-results/' \
        -e "ssh ${SSH_OPTS[*]}" \
        ./ "${TARGET}:${DIR}/"
    remote "test -f .env || { echo 'missing ${DIR}/.env: copy it from .env.docker.example and fill it in' >&2; exit 1; }"
}

action="${1:-}"
shift || true

case "${action}" in
    setup)
        ssh "${SSH_OPTS[@]}" "${TARGET}" "bash -s -- '${DIR}'" < ops/server_setup.sh
        ;;
    deploy)
        sync_code
        echo "==> build, migrate, start"
        remote "docker compose build --pull && docker compose run --rm migrate && docker compose up -d --build --remove-orphans && docker compose ps"
        ;;
    deploy-code)
        sync_code
        echo "==> rebuild code layer, migrate, restart Python services"
        remote "docker compose build && docker compose run --rm migrate && docker compose up -d --no-deps engine web token-refresher && docker compose ps"
        ;;
    status)
        remote "docker compose ps"
        ;;
    logs)
        remote "docker compose logs -f --tail=200"
        ;;
    restart)
        remote "docker compose restart engine web token-refresher && docker compose ps"
        ;;
    ssh)
        exec ssh -t "${SSH_OPTS[@]}" "${TARGET}" "cd '${DIR}' && exec \${SHELL:-/bin/bash} -l"
        ;;
    migrate-data)
        legacy_db="${1:-}"
        legacy_json="${2:-}"
        if [[ -z "${legacy_db}" || ! -f "${legacy_db}" ]]; then
            echo "usage: docker_deploy.sh migrate-data LEGACY_SQLITE [LEGACY_JSON_DIR] (file '${legacy_db}' not found)" >&2
            exit 2
        fi
        echo "==> copy legacy data to ${DIR}/var/import"
        remote "mkdir -p var/import/json"
        scp "${SSH_OPTS[@]}" "${legacy_db}" "${TARGET}:${DIR}/var/import/legacy.sqlite3"
        json_step=""
        if [[ -n "${legacy_json}" ]]; then
            rsync -az -e "ssh ${SSH_OPTS[*]}" "${legacy_json%/}/" "${TARGET}:${DIR}/var/import/json/"
            json_step="&& \$RUN import-json --root /import/json"
        fi
        # The containers run as an unprivileged user: make the copies readable.
        remote "chmod -R a+rX var/import"
        echo "==> import (engine services stopped meanwhile; the import is one transaction)"
        remote "RUN='docker compose run --rm --no-deps -v ${DIR}/var/import:/import:ro migrate python -m engine.migrate_data' \
            && docker compose up -d postgres && docker compose run --rm migrate \
            && docker compose stop engine web token-refresher \
            && \$RUN import-sqlite /import/legacy.sqlite3 ${json_step}; \
            status=\$?; docker compose up -d engine web token-refresher; exit \$status"
        ;;
    ssl-init)
        remote "ops/ssl_init.sh"
        ;;
    *)
        echo "usage: docker_deploy.sh setup|deploy|deploy-code|status|logs|restart|ssh|ssl-init|migrate-data LEGACY_SQLITE [JSON_DIR]" >&2
        exit 2
        ;;
esac
