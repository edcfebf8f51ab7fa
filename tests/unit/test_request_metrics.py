"""The API's request counts (orderhub/request_metrics.py): by method, the route Django matched and
the status, a view's crash counted as the 500 it becomes; never a path or an id as a label."""
import pytest
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db(databases="__all__")


def count(method, route, status):
    return REGISTRY.get_sample_value("orderhub_api_requests_total",
                                     {"method": method, "route": route, "status": status}) or 0


@pytest.fixture
def client(django_user_model):
    api = APIClient(raise_request_exception=False)
    api.force_authenticate(django_user_model.objects.create(username="metrics-client"))
    return api


def test_requests_are_counted_by_route_and_status(client, monkeypatch):
    from orderhub.api import views

    routes = ("api/products/", "unmatched", "api/orders/<pk>/")
    before = {route: count("GET", route, status) for route, status in zip(routes, ("200", "404", "500"))}
    client.get("/api/products/")
    client.get("/no/such/page/")

    def crash(self, request, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views.OrderViewSet, "retrieve", crash)
    assert client.get("/api/orders/6f1d3c2e-0000-4000-8000-000000000001/").status_code == 500

    assert count("GET", "api/products/", "200") == before["api/products/"] + 1
    assert count("GET", "unmatched", "404") == before["unmatched"] + 1
    assert count("GET", "api/orders/<pk>/", "500") == before["api/orders/<pk>/"] + 1
    for metric in REGISTRY.collect():
        if metric.name == "orderhub_api_requests":
            for sample in metric.samples:
                assert "6f1d3c2e" not in sample.labels["route"]
