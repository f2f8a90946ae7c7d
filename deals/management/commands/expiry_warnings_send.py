from django.core.management.base import BaseCommand

from deals import services


class Command(BaseCommand):
    help = services.expiry_warnings_send.__doc__.strip().splitlines()[0]

    def handle(self, *args, **options):
        result = services.expiry_warnings_send()
        self.stdout.write(f"expiry_warnings_send: {result}")
