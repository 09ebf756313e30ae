#!/usr/bin/env bash
# One-shot VPS provisioning (Ubuntu/Debian, run as root ON the server):
#   Docker Engine + compose plugin from Docker's apt repository, rsync, the deploy directory,
#   ufw allowing only 22/80/443, Docker enabled on boot, and the daily certificate-renewal cron.
# Usually run through `make docker-setup`, which pipes this file over ssh:
#   ssh root@host 'bash -s -- /opt/nifty-engine' < ops/server_setup.sh
# Safe to re-run.
set -euo pipefail

REMOTE_DIR="${1:-/opt/nifty-engine}"

if [[ "$(id -u)" -ne 0 ]]; then
    echo "server_setup.sh must run as root (it installs packages and configures ufw)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

echo "==> base packages"
apt-get update -q
apt-get install -y -q ca-certificates curl gnupg rsync ufw cron

if ! command -v docker >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then
    echo "==> Docker Engine + compose plugin (download.docker.com)"
    # shellcheck disable=SC1091  # os-release exists on every supported distribution
    . /etc/os-release
    install -m 0755 -d /etc/apt/keyrings
    curl -fsSL "https://download.docker.com/linux/${ID}/gpg" -o /etc/apt/keyrings/docker.asc
    chmod a+r /etc/apt/keyrings/docker.asc
    echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/${ID} ${VERSION_CODENAME} stable" \
        > /etc/apt/sources.list.d/docker.list
    apt-get update -q
    apt-get install -y -q docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin
fi
systemctl enable --now docker

echo "==> directories under ${REMOTE_DIR}"
install -d -m 0750 "${REMOTE_DIR}"
install -d -m 0755 "${REMOTE_DIR}/var" "${REMOTE_DIR}/var/import"
install -d -m 0700 "${REMOTE_DIR}/var/backups"

echo "==> firewall: 22, 80, 443 only"
ufw default deny incoming
ufw default allow outgoing
ufw allow 22/tcp
ufw allow 80/tcp
ufw allow 443/tcp
ufw --force enable

echo "==> daily certificate renewal (no-op until a certificate exists)"
cat > /etc/cron.d/nifty-certbot-renew <<CRON
# Renew the Let's Encrypt certificate inside its 30-day window and reload nginx.
SHELL=/bin/bash
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
17 3 * * * root cd ${REMOTE_DIR} && [ -x ops/ssl_init.sh ] && ops/ssl_init.sh renew >> /var/log/nifty-certbot-renew.log 2>&1
CRON
chmod 0644 /etc/cron.d/nifty-certbot-renew
systemctl enable --now cron >/dev/null 2>&1 || true

echo "==> done. Next: copy .env to ${REMOTE_DIR}/.env (chmod 600), then make docker-deploy"
