from django.urls import path

app_name = "oncall"

urlpatterns: list = []
