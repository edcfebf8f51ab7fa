"""The domain workers: one Django app and one Celery queue per business domain."""
