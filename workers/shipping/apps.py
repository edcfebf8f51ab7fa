from django.apps import AppConfig


class ShippingConfig(AppConfig):
    name = "workers.shipping"
    label = "shipping"
    default_auto_field = "django.db.models.BigAutoField"
