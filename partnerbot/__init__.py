"""partnerbot: the application layer (configuration, CLI, wiring of bot, storage and payments)."""
