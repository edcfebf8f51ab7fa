"""The shipping service: its own database, its own queue (shipping.commands)."""
