"""The dead-letter archive: every message RabbitMQ dead-letters, kept with its reason for an operator."""
