"""The Telegram bot: handlers, texts and keyboards over the billing service."""
