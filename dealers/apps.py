from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_migrate


class DealersConfig(AppConfig):
    name = "dealers"
    verbose_name = "Dealers and people"

    def ready(self):
        from allauth.account.signals import password_reset

        from dealers.roles import on_post_migrate
        from dealers.signals import on_password_reset, on_user_logged_in

        # Once per migrate run: after the last app, when every model's permissions exist.
        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="dealers.staff_groups_sync")
        user_logged_in.connect(on_user_logged_in, dispatch_uid="dealers.login_record")
        password_reset.connect(on_password_reset, dispatch_uid="dealers.lockout_reset")
