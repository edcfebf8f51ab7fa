from django.apps import AppConfig


class ApiKeysConfig(AppConfig):
    name = "orderhub.apikeys"
    label = "apikeys"
    verbose_name = "API keys"

    def ready(self):
        from orderhub.apikeys import schema  # noqa: F401  (the security scheme in the OpenAPI schema)
