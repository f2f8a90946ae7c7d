from django.core.management.base import BaseCommand

from deals import services


class Command(BaseCommand):
    help = services.stale_registrations_flag.__doc__.strip().splitlines()[0]

    def handle(self, *args, **options):
        result = services.stale_registrations_flag()
        self.stdout.write(f"stale_registrations_flag: {result}")
