from django.core.management.base import BaseCommand

from prm.outbox import outbox_flush


class Command(BaseCommand):
    help = "Send the emails left in the outbox (the broker or the mail server was down)."

    def handle(self, *args, **options):
        self.stdout.write(f"outbox_flush: {outbox_flush()} sent")
