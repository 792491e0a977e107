from django.urls import path

from dashboards import stock_browser, views

app_name = "dashboards"

urlpatterns = [
    path("", views.home, name="home"),
    path("sites/<str:code>/", views.site_dashboard, name="site"),
    path("sites/<slug:code>/restock.csv", views.restock_csv, name="restock_csv"),
    path("skus/<str:code>/", views.sku_lineage, name="sku"),
    path("stock/", stock_browser.stock_browser, name="stock"),
    path("slos/panel/", views.slo_panel, name="slo_panel"),
    path("couriers/", views.courier_scorecard, name="couriers"),
]
