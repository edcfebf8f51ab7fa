from django.urls import path
from rest_framework.routers import SimpleRouter

from orderhub.api.views import OrderViewSet, ProductList
from orderhub.reports.views import SalesReport
from orderhub.webhooks.views import WebhookEndpointViewSet

router = SimpleRouter()
router.register("orders", OrderViewSet, basename="order")
router.register("webhooks", WebhookEndpointViewSet, basename="webhook")

urlpatterns = [path("products/", ProductList.as_view(), name="product-list"),
               path("reports/sales/", SalesReport.as_view(), name="reports-sales"), *router.urls]
