from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orderhub.orders"
    label = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from orderhub.orders import receivers  # noqa: F401
