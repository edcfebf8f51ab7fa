from django.apps import AppConfig


class DeadlettersConfig(AppConfig):
    name = "orderhub.deadletters"
    label = "deadletters"
    default_auto_field = "django.db.models.BigAutoField"
