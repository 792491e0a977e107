from django.urls import path

from dashboards import views

app_name = "dashboards"

urlpatterns = [
    path("", views.home, name="home"),
    path("sites/<slug:code>/", views.site_dashboard, name="site"),
    path("sites/<slug:code>/restock.csv", views.restock_csv, name="restock_csv"),
    path("skus/<str:code>/", views.sku_lineage, name="sku"),
]
