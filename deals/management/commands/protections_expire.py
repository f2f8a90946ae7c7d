from django.core.management.base import BaseCommand

from deals import services


class Command(BaseCommand):
    help = services.protections_expire.__doc__.strip().splitlines()[0]

    def handle(self, *args, **options):
        result = services.protections_expire()
        self.stdout.write(f"protections_expire: {result}")
