from django.core.management.base import BaseCommand

from tiers import rollup


class Command(BaseCommand):
    help = (
        "Rebuild the dashboards' roll-up of the registration figures per dealer and month (nightly; "
        "safe to rerun at any time: the dashboards count whatever changed since live)."
    )

    def handle(self, *args, **options):
        rows = rollup.rollup_build()
        rollup.rollup_warm()
        state = rollup.RollupState.objects.get()
        self.stdout.write(f"Rolled up {rows} dealer-month rows in {state.seconds} s.")
