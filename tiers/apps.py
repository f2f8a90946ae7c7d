from django.apps import AppConfig
from django.db.models.signals import post_delete, post_init, post_migrate, post_save


class TiersConfig(AppConfig):
    name = "tiers"
    verbose_name = "Partner tiers"

    def ready(self):
        from tiers.defaults import on_post_migrate

        # The default tiers come back after a test database flush, like the staff groups.
        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="tiers.default_tiers")

        # A saved or deleted registration marks its dealer for live counting until the next roll-up.
        from dealers.models import Organisation
        from deals.models import Registration
        from tiers import rollup
        from tiers.models import Sale

        post_init.connect(rollup.on_registration_init, sender=Registration, dispatch_uid="tiers.rollup.init")
        post_save.connect(rollup.on_registration_saved, sender=Registration, dispatch_uid="tiers.rollup.saved")
        post_delete.connect(rollup.on_registration_deleted, sender=Registration, dispatch_uid="tiers.rollup.deleted")
        post_init.connect(rollup.on_organisation_init, sender=Organisation, dispatch_uid="tiers.rollup.org_init")
        post_save.connect(rollup.on_organisation_saved, sender=Organisation, dispatch_uid="tiers.rollup.org_saved")
        post_init.connect(rollup.on_sale_init, sender=Sale, dispatch_uid="tiers.rollup.sale_init")
        post_save.connect(rollup.on_sale_saved, sender=Sale, dispatch_uid="tiers.rollup.sale_saved")
        post_delete.connect(rollup.on_sale_deleted, sender=Sale, dispatch_uid="tiers.rollup.sale_deleted")
