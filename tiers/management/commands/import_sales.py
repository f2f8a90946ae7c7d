"""Import the vendor's sales to dealers from an ERP CSV file (the nightly file drop).

Same columns and checks as the import in the admin (tiers/imports.py); all or nothing. Lines
imported before are skipped, so the same or an overlapping file can be dropped again safely.
Exits non-zero, saving nothing, when the file is refused.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tiers.imports import SaleImportResource, SalesCSV, error_lines, summary_text


class Command(BaseCommand):
    help = "Import the vendor's sales to dealers from an ERP CSV file (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="The CSV file; see tiers/imports.py for its columns.")
        parser.add_argument("--dry-run", action="store_true", help="Check the file and report; save nothing.")

    def handle(self, *args, file, dry_run=False, **options):
        path = Path(file)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CommandError(f"Cannot read {file}: {e.strerror or e}.") from None
        try:
            dataset = SalesCSV(encoding="utf-8-sig").create_dataset(data)
        except UnicodeDecodeError:
            raise CommandError(f"{file} is not UTF-8 text: export it from the ERP as UTF-8 CSV.") from None
        except Exception as e:
            raise CommandError(f"{file} is not a readable CSV file: {e}") from None

        result = SaleImportResource().import_data(dataset, dry_run=dry_run, command=True, file_name=path.name)

        problems = error_lines(result)
        if problems:
            for line in problems:
                self.stderr.write(line)
            raise CommandError(
                f"Nothing was imported from {file}: {len(problems)} problem{'' if len(problems) == 1 else 's'} "
                "(rows count the data rows from 1; line 1 of the file is the header)."
            )
        text = summary_text(result.sales_summary, preview=dry_run)
        self.stdout.write(f"Dry run, nothing saved. {text}" if dry_run else text)
