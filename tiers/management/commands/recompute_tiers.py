from datetime import date

from django.core.management.base import BaseCommand, CommandError

from tiers import services


class Command(BaseCommand):
    help = "Evaluate every dealer's tier as of today (or --date); once per date, safe to rerun."

    def add_arguments(self, parser):
        parser.add_argument("--date", help="Evaluate as of this date (YYYY-MM-DD), e.g. to catch up a missed night.")

    def handle(self, *args, **options):
        try:
            day = date.fromisoformat(options["date"]) if options["date"] else None
        except ValueError:
            raise CommandError("--date must look like 2026-11-23.") from None
        result = services.tiers_recompute(day=day)
        if result.created:
            self.stdout.write(
                f"Evaluated {result.run.evaluations.count()} dealers as of {result.run.run_on}: "
                f"{result.changes} tier change(s)."
            )
        else:
            self.stdout.write(f"Already evaluated as of {result.run.run_on}: nothing changed.")
