from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator's console: actions on sagas, orders, dead letters and stock, each audited."""

    name = "orderhub.console"
    label = "console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_migrate

        from orderhub.console import roles

        post_migrate.connect(roles.after_migrate, sender=self)
