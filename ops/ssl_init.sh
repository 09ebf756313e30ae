#!/usr/bin/env bash
# Let's Encrypt certificate for the dashboard, run ON the server from the deploy directory.
#
#   ops/ssl_init.sh          first issuance: nginx stopped, certbot --standalone binds :80;
#                            when a certificate already exists: certbot --webroot through nginx
#   ops/ssl_init.sh renew    daily cron: certbot renew (webroot) + nginx reload
#
# DOMAIN and CERTBOT_EMAIL come from .env. The lineage is always named "dashboard", which is
# the path ops/nginx/dashboard.conf reads (/etc/letsencrypt/live/dashboard/).
set -euo pipefail

cd "$(dirname "$0")/.."

MODE="${1:-issue}"
CERT_NAME="dashboard"

env_value() {
    # Read KEY=value from .env without executing it.
    local key="$1"
    sed -n "s/^${key}=//p" .env | tail -n 1 | tr -d '\r' | sed -e 's/^"//' -e 's/"$//'
}

if [[ ! -f .env ]]; then
    echo "ssl_init.sh: .env not found in $(pwd)" >&2
    exit 1
fi

have_certificate() {
    docker compose run --rm --no-deps --entrypoint sh certbot \
        -c "test -s /etc/letsencrypt/live/${CERT_NAME}/fullchain.pem" >/dev/null 2>&1
}

case "${MODE}" in
    issue)
        DOMAIN="$(env_value DOMAIN)"
        EMAIL="$(env_value CERTBOT_EMAIL)"
        if [[ -z "${DOMAIN}" || -z "${EMAIL}" ]]; then
            echo "ssl_init.sh: set DOMAIN and CERTBOT_EMAIL in .env" >&2
            exit 1
        fi
        if have_certificate; then
            echo "==> certificate exists: webroot issuance through the running nginx"
            docker compose up -d nginx
            docker compose run --rm --no-deps certbot certonly --webroot -w /var/www/certbot \
                --cert-name "${CERT_NAME}" -d "${DOMAIN}" --email "${EMAIL}" \
                --agree-tos --non-interactive --keep-until-expiring
        else
            echo "==> first issuance: stopping nginx, certbot --standalone on :80"
            docker compose stop nginx || true
            docker compose run --rm --no-deps -p 80:80 certbot certonly --standalone \
                --cert-name "${CERT_NAME}" -d "${DOMAIN}" --email "${EMAIL}" \
                --agree-tos --non-interactive
        fi
        docker compose up -d nginx
        docker compose exec -T nginx nginx -s reload
        echo "==> https://${DOMAIN}/ is served with the Let's Encrypt certificate"
        ;;
    renew)
        if ! have_certificate; then
            echo "ssl_init.sh renew: no certificate yet, nothing to renew"
            exit 0
        fi
        docker compose run --rm --no-deps certbot renew --webroot -w /var/www/certbot --quiet
        docker compose exec -T nginx nginx -s reload
        ;;
    *)
        echo "usage: ops/ssl_init.sh [issue|renew]" >&2
        exit 2
        ;;
esac
