"""The project's URLs plus one view that fails, to see the 500 page a person would get."""

from django.urls import path

from inventory_ops.urls import urlpatterns as project_urlpatterns


def crash(request):
    raise RuntimeError("a bug on our side")


urlpatterns = [path("crash/", crash), *project_urlpatterns]
