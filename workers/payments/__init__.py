"""The payments service: its own database, its own queue (payments.commands)."""
