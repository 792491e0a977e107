"""An index of the SLO counters by (span, start): a read takes three time ranges of every SLO
at once. Built concurrently on PostgreSQL."""

from django.db import migrations, models

from core.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("slos", "0002_default_targets")]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="slocount",
            index=models.Index(fields=["span_s", "start"], name="slo_count_span_start_idx"),
        )
    ]
