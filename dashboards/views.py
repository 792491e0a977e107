"""Dashboard pages."""

from django.db.models import Count, Sum
from django.shortcuts import render

from inventory_ops.models import Site


def home(request):
    """All sites at a glance. The live KPI dashboard replaces this (issue: live dashboards)."""
    sites = Site.objects.annotate(
        skus=Count("stock_levels"),
        on_hand=Sum("stock_levels__on_hand"),
        reserved=Sum("stock_levels__reserved"),
    )
    return render(request, "dashboards/home.html", {"sites": sites})
