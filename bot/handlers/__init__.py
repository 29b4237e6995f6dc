"""Command, button and error handlers; registered by bot.app."""
