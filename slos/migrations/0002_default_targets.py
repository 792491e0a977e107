from decimal import Decimal

from django.db import migrations

DEFAULTS = {
    "ingest_availability": Decimal("0.999"),
    "freshness": Decimal("0.99"),
    "correctness": Decimal("0.98"),
}


def targets_create(apps, schema_editor):
    SloTarget = apps.get_model("slos", "SloTarget")
    for slo, target in DEFAULTS.items():
        SloTarget.objects.get_or_create(slo=slo, defaults={"target": target})


class Migration(migrations.Migration):
    dependencies = [("slos", "0001_counters_and_targets")]
    operations = [migrations.RunPython(targets_create, migrations.RunPython.noop)]
