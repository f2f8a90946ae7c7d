"""The "Direct sales" staff role: the vendor's own sales team, who look customers up before
approaching them and read the named accounts (dealers.roles keeps it in step after migrate)."""

from django.db import migrations

ROLE = "Direct sales"
PERMISSIONS = {"deals": {"namedaccount": ["view"]}}


def create_group(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=ROLE)
    for app_label, by_model in PERMISSIONS.items():
        codenames = [f"{action}_{model}" for model, actions in by_model.items() for action in actions]
        group.permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=ROLE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dealers", "0002_staff_groups"),
        ("deals", "0002_conflicts"),  # NamedAccount, whose view permission the role gets
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
