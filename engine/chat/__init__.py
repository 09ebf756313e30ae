"""Chat control over Telegram and Zoho Cliq (see engine.chat.service)."""
