from django.core.management.base import BaseCommand

from deals import services


class Command(BaseCommand):
    help = services.review_reminders_send.__doc__.strip().splitlines()[0]

    def handle(self, *args, **options):
        result = services.review_reminders_send()
        self.stdout.write(f"review_reminders_send: {result}")
