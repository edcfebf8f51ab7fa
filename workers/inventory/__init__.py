"""The inventory service: its own database, its own queue (inventory.commands)."""
