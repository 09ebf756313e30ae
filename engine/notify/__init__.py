"""Chat channels: log-only always; Telegram Bot API and Zoho Cliq webhook when enabled."""
