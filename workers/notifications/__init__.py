"""The notifications service: its own database, its own queue (notifications.commands)."""
