"""Vendor staff roles as groups with permissions.

Permissions are normally created after all migrations ran; create them here first so the
groups can be granted them on a fresh database.
"""

from django.db import migrations

ROLE_PERMISSIONS = {
    "Channel admin": {
        "dealers": {
            "organisation": ["add", "change", "view", "delete"],
            "region": ["add", "change", "view", "delete"],
            "territory": ["add", "change", "view", "delete"],
            "specialisation": ["add", "change", "view", "delete"],
            "membership": ["change", "view"],
            "invitation": ["view"],
            "organisationevent": ["view"],
            "user": ["add", "change", "view"],
        },
        "auth": {"group": ["view"]},
    },
    "Regional director": {
        "dealers": {
            "organisation": ["change", "view"],
            "region": ["view"],
            "territory": ["add", "change", "view", "delete"],
            "specialisation": ["view"],
            "membership": ["view"],
            "invitation": ["view"],
            "organisationevent": ["view"],
        },
    },
    "Partner manager": {
        "dealers": {
            "organisation": ["change", "view"],
            "region": ["view"],
            "territory": ["view"],
            "specialisation": ["view"],
            "membership": ["view"],
            "invitation": ["view"],
            "organisationevent": ["view"],
        },
    },
}


def create_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, by_app in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for app_label, by_model in by_app.items():
            for model, actions in by_model.items():
                codenames = [f"{action}_{model}" for action in actions]
                perms = Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
                group.permissions.add(*perms)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dealers", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
