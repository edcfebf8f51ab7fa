"""The two roles of the console: `operators` act, `viewers` read. `manage.py setup_roles` and every
`migrate` keep both groups' permissions current."""
from django.contrib.auth.models import Group, Permission

OPERATORS, VIEWERS = "operators", "viewers"
# Read by both roles: every model of these apps (API tokens are not: they are secrets; webhook
# endpoints are, their admin never shows the signing secret).
READABLE_APPS = ["orders", "deadletters", "sagas", "console", "webhooks", "inventory", "payments", "shipping", "notifications"]
# Operators only, besides reading: the console's actions, and the sandbox provider's fault switch.
ACTION_PERMISSIONS = [
    ("console", "retry_saga"), ("console", "cancel_saga"), ("console", "resolve_saga"),
    ("console", "replay_dead_letter"), ("console", "discard_dead_letter"), ("console", "restock"),
    ("payments", "change_sandboxfault"),
]


def setup_roles() -> dict[str, int]:
    """Create or update both groups; returns how many permissions each holds."""
    _ensure_permissions()
    view = Permission.objects.filter(content_type__app_label__in=READABLE_APPS, codename__startswith="view_")
    actions = [Permission.objects.get(content_type__app_label=app, codename=codename)
               for app, codename in ACTION_PERMISSIONS]
    viewers, _ = Group.objects.get_or_create(name=VIEWERS)
    viewers.permissions.set(view)
    operators, _ = Group.objects.get_or_create(name=OPERATORS)
    operators.permissions.set(list(view) + actions)
    return {VIEWERS: viewers.permissions.count(), OPERATORS: operators.permissions.count()}


def _ensure_permissions():
    """Django creates permissions after each app migrates; make sure every app's exist now."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0)


def after_migrate(sender, using="default", **kwargs):
    if using == "default":
        setup_roles()
