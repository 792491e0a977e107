from django.urls import path

from oncall import views

app_name = "oncall"

urlpatterns = [
    path("", views.console, name="console"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert"),
    path("alerts/<int:pk>/<slug:action>/", views.alert_transition_view, name="alert_transition"),
    path("silences/", views.silence_create_view, name="silence_create"),
    path("silences/<int:pk>/end/", views.silence_end_view, name="silence_end"),
    path("remediations/<slug:kind>/", views.remediation_view, name="remediation"),
    path("runbooks/", views.runbook_list, name="runbooks"),
    path("runbooks/<slug:slug>/", views.runbook_detail, name="runbook"),
    path(
        "runbooks/<slug:slug>/versions/<int:number>/",
        views.runbook_version,
        name="runbook_version",
    ),
]
