from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        import importlib

        from django.conf import settings

        from contracts.envelope import pin_write_versions

        # Import the definitions so every saga type is registered in every process; then the
        # extensions (your own sagas, contract versions, handlers: ORDERHUB_EXTENSIONS).
        from sagas import definitions  # noqa: F401

        for module in settings.EXTENSIONS:
            importlib.import_module(module)
        pin_write_versions(settings.CONTRACT_WRITE_VERSIONS)
