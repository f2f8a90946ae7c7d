"""A trigram index on the normalised customer name, so the conflict check finds fuzzy candidates
through an index at a million registrations. PostgreSQL only: SQLite looks candidates up by
country and exact keys, which is enough at its scale."""

from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS customer_name_key_trgm ON deals_customer USING gin (name_key gin_trgm_ops)"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS customer_name_key_trgm")


class Migration(migrations.Migration):
    dependencies = [("deals", "0002_conflicts")]

    operations = [migrations.RunPython(create, drop)]
