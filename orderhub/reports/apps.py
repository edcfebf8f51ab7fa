from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "orderhub.reports"
    label = "reports"
    verbose_name = "Sales reports (read model)"
    default_auto_field = "django.db.models.BigAutoField"
