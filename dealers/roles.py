"""What each vendor staff role may do in the admin, kept in step with the models.

The groups are created by migration dealers/0002; this module brings them up to date after
every `migrate` (post_migrate), so permissions of models added later (deals, tiers) reach the
roles too, and a flushed test database gets its groups back.
"""

ROLE_PERMISSIONS: dict[str, dict[str, dict[str, list[str]]]] = {
    "Channel admin": {
        "dealers": {
            "organisation": ["add", "change", "view", "delete"],
            "region": ["add", "change", "view", "delete"],
            "territory": ["add", "change", "view", "delete"],
            "specialisation": ["add", "change", "view", "delete"],
            "membership": ["change", "view"],
            "invitation": ["view"],
            "organisationevent": ["view"],
            "improvementplan": ["view"],
            "user": ["add", "change", "view"],
        },
        "auth": {"group": ["view"]},
        "deals": {
            "programmesettings": ["change", "view"],
            "holiday": ["add", "change", "view", "delete"],
            "productline": ["add", "change", "view"],
            "product": ["add", "change", "view"],
            "customer": ["view"],
            "registration": ["view"],
            "extensionrequest": ["view"],
            "namedaccount": ["add", "change", "view", "delete"],
            "protectionlookup": ["view"],
            "conflict": ["change", "view"],
            "erasurelog": ["view"],
        },
        "prm": {"outboxemail": ["view"]},
        # Failed log-ins and lock-outs: deleting a row lifts that lock-out.
        "axes": {"accessattempt": ["view", "delete"]},
        "tiers": {
            "sale": ["add", "change", "view"],
            "tier": ["add", "change", "view"],
            "tierprogramme": ["add", "change", "view"],
            "certification": ["add", "change", "view"],
            "certificationholding": ["add", "change", "view"],
            "satisfactionscore": ["add", "change", "view"],
        },
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
            "improvementplan": ["view"],
        },
        "deals": {
            "productline": ["view"],
            "product": ["view"],
            "customer": ["view"],
            "registration": ["view"],
            "extensionrequest": ["view"],
            "conflict": ["change", "view"],
        },
        "tiers": {
            "sale": ["view"],
            "tier": ["view"],
            "certificationholding": ["view"],
            "satisfactionscore": ["view"],
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
            "improvementplan": ["view"],
        },
        "deals": {
            "productline": ["view"],
            "product": ["view"],
            "customer": ["view"],
            "registration": ["view"],
            "extensionrequest": ["view"],
            "conflict": ["view"],
        },
        "tiers": {
            "sale": ["view"],
            "tier": ["view"],
            "certificationholding": ["view"],
            "satisfactionscore": ["view"],
        },
    },
    # The direct team sees no dealers; in the admin it reads the named accounts it works.
    "Direct sales": {
        "deals": {"namedaccount": ["view"]},
    },
}


def staff_groups_sync(*, apps=None, verbosity: int = 0) -> None:
    """Create the role groups if missing and grant them ROLE_PERMISSIONS (never revokes)."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    apps = apps or global_apps
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=verbosity, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, by_app in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for app_label, by_model in by_app.items():
            codenames = [f"{action}_{model}" for model, actions in by_model.items() for action in actions]
            group.permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))


def on_post_migrate(sender, apps=None, verbosity=0, **kwargs) -> None:
    staff_groups_sync(apps=apps, verbosity=verbosity)
