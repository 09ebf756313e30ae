# Docker deployment targets — included from the main Makefile (`include ops/deploy.mk`).
# Every target reads .env.deploy (DEPLOY_SSH_KEY, DEPLOY_USER, DEPLOY_HOST, DEPLOY_REMOTE_DIR)
# through ops/docker_deploy.sh; nothing here needs secrets on the command line.

DEPLOY := ops/docker_deploy.sh
LEGACY_DB ?=
LEGACY_JSON ?=

.PHONY: docker-setup docker-deploy docker-deploy-code docker-status docker-logs \
        docker-restart docker-ssh docker-migrate-data ssl-init

docker-setup: ## One-shot VPS provisioning: Docker + compose, dirs, ufw 22/80/443, renewal cron
	@$(DEPLOY) setup

docker-deploy: ## Full deploy: rsync -> build -> migrate -> docker compose up -d --build
	@$(DEPLOY) deploy

docker-deploy-code: ## Code-only deploy: rsync, rebuild, migrate, restart engine/web/token-refresher
	@$(DEPLOY) deploy-code

docker-status: ## docker compose ps on the server
	@$(DEPLOY) status

docker-logs: ## Tail live logs of all containers on the server
	@$(DEPLOY) logs

docker-restart: ## Restart engine, web and token-refresher (not postgres/nginx)
	@$(DEPLOY) restart

docker-ssh: ## SSH into the server, in the deploy directory
	@$(DEPLOY) ssh

docker-migrate-data: ## Import a legacy SQLite (LEGACY_DB=path [LEGACY_JSON=dir]) into PostgreSQL
	@test -n "$(LEGACY_DB)" || { echo "usage: make docker-migrate-data LEGACY_DB=arb_bot_records.sqlite3 [LEGACY_JSON=dir]" >&2; exit 2; }
	@$(DEPLOY) migrate-data "$(LEGACY_DB)" $(if $(LEGACY_JSON),"$(LEGACY_JSON)")

ssl-init: ## Issue the Let's Encrypt certificate (standalone first time, webroot after)
	@$(DEPLOY) ssl-init
