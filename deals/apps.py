from django.apps import AppConfig
from django.db.models.signals import post_delete, post_init, post_save


class DealsConfig(AppConfig):
    name = "deals"
    verbose_name = "Deal registrations"

    def ready(self):
        # The customers with an open registration (deals.open_customers) follow every saved or
        # deleted registration and every renamed customer.
        from deals import open_customers
        from deals.models import Customer, Registration

        for signal, sender, handler in (
            (post_init, Registration, open_customers.on_registration_init),
            (post_save, Registration, open_customers.on_registration_saved),
            (post_delete, Registration, open_customers.on_registration_deleted),
            (post_init, Customer, open_customers.on_customer_init),
            (post_save, Customer, open_customers.on_customer_saved),
        ):
            signal.connect(handler, sender=sender, dispatch_uid=f"deals.open_customers.{handler.__name__}")
