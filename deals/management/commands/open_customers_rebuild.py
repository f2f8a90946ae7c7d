from django.core.management.base import BaseCommand

from deals import open_customers


class Command(BaseCommand):
    help = "Rebuild the customers with an open registration (deals.models.OpenCustomer) from the registrations."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Only compare the table with its definition.")

    def handle(self, *args, check=False, **options):
        if check:
            stored, live = open_customers.open_customers_stored(), open_customers.open_customers_live()
            self.stdout.write(
                f"open_customers_rebuild --check: {len(stored)} rows, {len(live - stored)} missing, "
                f"{len(stored - live)} wrong or extra"
            )
            if stored != live:
                raise SystemExit(1)
            return
        self.stdout.write(f"open_customers_rebuild: {open_customers.open_customers_rebuild()} customers")
