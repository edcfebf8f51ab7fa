from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Import the definitions so every saga type is registered in every process.
        from sagas import definitions  # noqa: F401
