from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TiersConfig(AppConfig):
    name = "tiers"
    verbose_name = "Partner tiers"

    def ready(self):
        from tiers.defaults import on_post_migrate

        # The default tiers come back after a test database flush, like the staff groups.
        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="tiers.default_tiers")
