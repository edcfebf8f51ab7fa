from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "orderhub.webhooks"
    label = "webhooks"
    verbose_name = "Client webhooks"
    default_auto_field = "django.db.models.BigAutoField"
