"""The two roles: operators act, viewers read (orderhub/console/roles.py)."""
import pytest
from django.contrib.auth.models import Group, User

from orderhub.console.roles import ACTION_PERMISSIONS, setup_roles

pytestmark = pytest.mark.django_db(databases="__all__")


def member(group):
    user = User.objects.create(username=f"someone-{group}", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return User.objects.get(id=user.id)  # fresh: permissions are cached per instance


def test_migrate_creates_both_roles_and_setup_roles_is_idempotent():
    before = {g.name: g.permissions.count() for g in Group.objects.filter(name__in=["operators", "viewers"])}
    assert set(before) == {"operators", "viewers"}
    assert setup_roles() == before


def test_an_operator_may_act_and_read_a_viewer_only_read():
    operator, viewer = member("operators"), member("viewers")
    for app, codename in ACTION_PERMISSIONS:
        assert operator.has_perm(f"{app}.{codename}")
        assert not viewer.has_perm(f"{app}.{codename}")
    for perm in ["sagas.view_sagainstance", "orders.view_order", "deadletters.view_deadletter",
                 "console.view_auditentry", "inventory.view_stockitem", "payments.view_payment"]:
        assert operator.has_perm(perm) and viewer.has_perm(perm)
    for perm in ["orders.delete_order", "orders.change_order", "authtoken.view_token", "auth.view_user"]:
        assert not operator.has_perm(perm) and not viewer.has_perm(perm)
