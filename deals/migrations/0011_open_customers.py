"""The customers with an open registration (deals.models.OpenCustomer, kept by deals.open_customers),
filled from the existing registrations, and on PostgreSQL a trigram index of their name keys: the
conflict check's and the protection lookup's fuzzy name searches read this narrow table instead of
rechecking hundreds of wide registration rows (Registration.customer_name_key, migration 0007) for
a common trade word.

fastupdate off: the table changes with every submission and closing; a GIN pending list would be
scanned by every search until a vacuum merged it."""

import django.db.models.deletion
from django.db import migrations, models

OPEN = "('submitted', 'info_requested', 'approved', 'escalated')"


def fill(apps, schema_editor):
    schema_editor.execute(
        "INSERT INTO deals_opencustomer (customer_id, country, name_key) "
        "SELECT c.id, c.country, c.name_key FROM deals_customer c WHERE EXISTS "
        f"(SELECT 1 FROM deals_registration r WHERE r.customer_id = c.id AND r.status IN {OPEN})"
    )
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS opencustomer_name_trgm ON deals_opencustomer "
            "USING gin (name_key gin_trgm_ops) WITH (fastupdate = off)"
        )
        schema_editor.execute("ANALYZE deals_opencustomer")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS opencustomer_name_trgm")


class Migration(migrations.Migration):
    dependencies = [("deals", "0010_forecast_past_close")]

    operations = [
        migrations.CreateModel(
            name="OpenCustomer",
            fields=[
                (
                    "customer",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="deals.customer",
                    ),
                ),
                ("country", models.CharField(max_length=2)),
                ("name_key", models.CharField(blank=True, max_length=200)),
            ],
        ),
        migrations.RunPython(fill, drop),
    ]
