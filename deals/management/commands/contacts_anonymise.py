from django.core.management.base import BaseCommand

from deals import privacy


class Command(BaseCommand):
    help = privacy.contacts_anonymise.__doc__.strip().splitlines()[0]

    def handle(self, *args, **options):
        result = privacy.contacts_anonymise()
        self.stdout.write(f"contacts_anonymise: {result}")
