from django.db import migrations

from tiers.defaults import create_default_tiers


def create(apps, schema_editor):
    create_default_tiers(apps.get_model("tiers", "Tier"), apps.get_model("tiers", "TierProgramme"))


class Migration(migrations.Migration):
    dependencies = [("tiers", "0001_initial")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
