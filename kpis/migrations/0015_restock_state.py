"""The restocking read model (kpis.restock_models): one row per stock level, and the window
row saying from when its demand counts; filled from the ledger as it stands.

New tables: nothing else is locked while they fill. A ledger write running meanwhile on the
previous version leaves its pairs' rows stale; `rebuild_kpis` writes them all again.
"""

import datetime

from django.db import migrations, models

DEMAND_DAYS = 28
WINDOW_STEP_S = 300
DEMAND_KINDS = ("order_dispatched", "order_returned")


def codes_in_code_point_order(apps, schema_editor):
    """The urgency order's ties go by site and SKU code as Python compares them (code points),
    whatever the database's default collation."""
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite compares text as bytes: UTF-8 keeps code point order
    for column in ("site_code", "sku_code"):
        schema_editor.execute(
            f'ALTER TABLE dashboards_restockstate ALTER COLUMN {column} TYPE varchar(64) COLLATE "C"'
        )


def restock_fill(apps, schema_editor):
    from collections import defaultdict

    from django.conf import settings
    from django.utils import timezone

    Movement = apps.get_model("inventory_ops", "Movement")
    StockLevel = apps.get_model("inventory_ops", "StockLevel")
    Site = apps.get_model("inventory_ops", "Site")
    Sku = apps.get_model("inventory_ops", "Sku")
    SiteReorderPoint = apps.get_model("inventory_ops", "SiteReorderPoint")
    RestockState = apps.get_model("dashboards", "RestockState")
    RestockWindow = apps.get_model("dashboards", "RestockWindow")
    now = timezone.now()
    newest = Movement.objects.order_by("-occurred_at").values_list("occurred_at", flat=True)
    seconds = int(
        (min(now, newest.first() or now) - datetime.timedelta(days=DEMAND_DAYS)).timestamp()
    )
    start = datetime.datetime.fromtimestamp(seconds - seconds % WINDOW_STEP_S, tz=datetime.UTC)
    lead_default = settings.RESTOCK_LEAD_DAYS
    RestockWindow.objects.create(id=1, start=start, lead_default=lead_default)
    demand = defaultdict(int)
    for site_id, sku_id, delta in (
        Movement.objects.filter(kind__in=DEMAND_KINDS, occurred_at__gte=start)
        .values_list("site_id", "sku_id", "on_hand_delta")
        .iterator(chunk_size=20000)
    ):
        demand[(site_id, sku_id)] -= delta
    sites = {
        site_id: (code, lead_default if lead is None else lead)
        for site_id, code, lead in Site.objects.values_list("id", "code", "restock_lead_days")
    }
    skus = {
        sku_id: (code, point)
        for sku_id, code, point in Sku.objects.values_list("id", "code", "reorder_point")
    }
    own = {
        (site_id, sku_id): point
        for site_id, sku_id, point in SiteReorderPoint.objects.values_list(
            "site_id", "sku_id", "reorder_point"
        )
    }
    rows = []
    for site_id, sku_id, on_hand, reserved in StockLevel.objects.values_list(
        "site_id", "sku_id", "on_hand", "reserved"
    ).iterator(chunk_size=20000):
        (site_code, lead), (sku_code, sku_point) = sites[site_id], skus[sku_id]
        point = own.get((site_id, sku_id), sku_point)
        available, units = on_hand - reserved, demand.get((site_id, sku_id), 0)
        below = point is not None and available < point
        rows.append(
            RestockState(
                site_id=site_id,
                sku_id=sku_id,
                site_code=site_code,
                sku_code=sku_code,
                available=available,
                reorder_point=point,
                lead_days=lead,
                demand=units,
                cover=available * DEMAND_DAYS / units if units > 0 else None,
                below_point=below,
                needs=below or (units > 0 and available * DEMAND_DAYS < lead * units),
            )
        )
    RestockState.objects.bulk_create(rows, batch_size=5000)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0014_breakdown_site_indexes"),
        ("inventory_ops", "0008_site_restock_days"),
    ]

    operations = [
        migrations.CreateModel(
            name="RestockState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("site_id", models.BigIntegerField()),
                ("sku_id", models.BigIntegerField()),
                ("site_code", models.CharField(max_length=64)),
                ("sku_code", models.CharField(max_length=64)),
                ("available", models.BigIntegerField()),
                ("reorder_point", models.BigIntegerField(null=True)),
                ("lead_days", models.IntegerField()),
                ("demand", models.BigIntegerField(default=0)),
                ("cover", models.FloatField(null=True)),
                ("below_point", models.BooleanField()),
                ("needs", models.BooleanField()),
            ],
            options={
                "indexes": [
                    models.Index(
                        condition=models.Q(("needs", True)),
                        fields=["cover", "site_code", "sku_code"],
                        name="restock_needs_idx",
                    ),
                    models.Index(
                        condition=models.Q(("needs", True)),
                        fields=["site_id", "cover", "sku_code"],
                        name="restock_site_needs_idx",
                    ),
                    models.Index(
                        condition=models.Q(("demand__gt", 0)),
                        fields=["cover"],
                        name="restock_cover_idx",
                    ),
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("site_id", "sku_id"), name="restock_state_pair")
                ],
            },
        ),
        migrations.CreateModel(
            name="RestockWindow",
            fields=[
                ("id", models.SmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("start", models.DateTimeField()),
                ("lead_default", models.IntegerField()),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "start__gte",
                                datetime.datetime(1900, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                            (
                                "start__lt",
                                datetime.datetime(2500, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                        ),
                        name="restock_window_start_storable",
                    )
                ],
            },
        ),
        migrations.RunPython(codes_in_code_point_order, migrations.RunPython.noop),
        migrations.RunPython(restock_fill, migrations.RunPython.noop, elidable=True),
    ]
