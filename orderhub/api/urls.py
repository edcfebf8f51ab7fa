from django.urls import path
from rest_framework.routers import SimpleRouter

from orderhub.api.views import OrderViewSet, ProductList

router = SimpleRouter()
router.register("orders", OrderViewSet, basename="order")

urlpatterns = [path("products/", ProductList.as_view(), name="product-list"), *router.urls]
