from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DealersConfig(AppConfig):
    name = "dealers"
    verbose_name = "Dealers and people"

    def ready(self):
        from dealers.roles import on_post_migrate

        # Once per migrate run: after the last app, when every model's permissions exist.
        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="dealers.staff_groups_sync")
