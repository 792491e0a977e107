from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from inventory_ops import metrics, views
from inventory_ops.api import api
from oncall import rq_pages

# A dependency outage outside any view (DEBUG off) is a 503 too, also one Django reports as a
# 400 (a session it could not save); other errors keep the 400 and 500 pages.
handler400 = "inventory_ops.views.bad_request"
handler500 = "inventory_ops.views.server_error"

urlpatterns = [
    # Browsers ask for /favicon.ico on pages without an icon link (the Django admin's).
    path("favicon.ico", views.favicon, name="favicon"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/rq/", include(rq_pages.urls)),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("oncall/", include("oncall.urls")),
    path("", include("dashboards.urls")),
]
