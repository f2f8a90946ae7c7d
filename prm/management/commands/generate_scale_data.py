"""Generate a data set at scale for benchmarks: 10,000 dealers and a million registrations by default.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prm_bench DJANGO_DEBUG=1 \
        .venv/bin/python manage.py generate_scale_data --dealers 10000 --registrations 1000000 --seed 1

Migrate the database first. The generation code is prm.scaledata (what it makes, and how). Every
person's password is scale-bench-2026; the e-mail addresses are predictable (see --help). On
PostgreSQL the parameters are recorded as the comment of the table deals_registration, and --check
tells whether data with the same parameters is there. On SQLite only small sizes are accepted
(plain INSERTs instead of COPY), for tests.
"""

from __future__ import annotations

import sys
from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from prm import scaledata

SQLITE_MAX_REGISTRATIONS = 20_000


class Command(BaseCommand):
    help = (
        "Generate a realistic data set at scale (PostgreSQL; SQLite for small sizes only). People: "
        f"dealer users dealer{{N}}.{{k}}@scale.example (k=1 is the dealer admin; dealer 1 is the big dealer), "
        "distributor users distributor{N}.{k}@scale.example, partner managers pm{N}@vendor-scale.example, "
        "regional directors rd{N}@vendor-scale.example, admin@vendor-scale.example (channel admin), "
        f"direct{{N}}@vendor-scale.example (direct sales); password {scaledata.PASSWORD}; vendor staff have a "
        f"TOTP authenticator with the secret {scaledata.TOTP_SECRET}."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dealers", type=int, default=10_000, help="dealer organisations (default 10,000)")
        parser.add_argument(
            "--registrations", type=int, default=1_000_000, help="registrations in all (default 1,000,000)"
        )
        parser.add_argument("--seed", type=int, default=1, help="everything random comes from it (default 1)")
        parser.add_argument(
            "--today",
            help="the anchor date (YYYY-MM-DD) the data is relative to; its 07:00 local time is 'now' for the "
            "data (default: today)",
        )
        parser.add_argument(
            "--big-dealer-registrations",
            type=int,
            help=f"registrations of the big dealer, dealer 1 (default {scaledata.BIG_DEALER_REGISTRATIONS:,}, or a "
            "fifth of a smaller data set)",
        )
        parser.add_argument(
            "--flush", action="store_true", help="empty the tables this command fills first, if they hold anything"
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="exit 0 if data made with the same --dealers, --registrations and --seed (and --today and "
            "--big-dealer-registrations, if given) is present, 1 otherwise; writes nothing",
        )
        parser.add_argument("--batch-rows", type=int, default=20_000, help=argparse_suppress())

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        dealers, registrations = options["dealers"], options["registrations"]
        if dealers < 1 or registrations < 1:
            raise CommandError("--dealers and --registrations must be at least 1.")
        today = self._date(options["today"]) if options["today"] else timezone.localdate()
        big = options["big_dealer_registrations"] or scaledata.default_big(registrations)
        params = scaledata.Params(
            dealers=dealers, registrations=registrations, seed=options["seed"], today=today, big=big
        )
        if options["check"]:
            self._check(params, options)
            return
        if connection.vendor != "postgresql" and registrations > SQLITE_MAX_REGISTRATIONS:
            raise CommandError(
                f"On {connection.vendor} this command makes at most {SQLITE_MAX_REGISTRATIONS:,} registrations (it "
                "falls back to plain INSERTs, for tests). Point DATABASE_URL at PostgreSQL for the full data set."
            )
        if connection.vendor not in ("postgresql", "sqlite"):
            raise CommandError("Only PostgreSQL (and SQLite, for small sizes) is supported.")
        filled = scaledata.non_empty_tables()
        if filled and not options["flush"]:
            raise CommandError(
                f"The database is not empty ({', '.join(filled[:6])}{' …' if len(filled) > 6 else ''} hold rows). "
                "Use --flush to empty the tables this command fills (everything in them is lost)."
            )
        if filled:
            self.stdout.write(f"flushing {len(filled)} non-empty tables")
            scaledata.flush_tables(connection)
        self.stdout.write(f"generating: {params.marker()} on {connection.vendor} ({connection.settings_dict['NAME']})")
        generator = scaledata.ScaleGenerator(
            params, out=lambda text: self.stdout.write(text), batch_rows=options["batch_rows"]
        )
        result = generator.run()
        self._report(result, params)

    @staticmethod
    def _date(text: str) -> date:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise CommandError(f"--today {text!r} is not a date (YYYY-MM-DD).") from None

    def _check(self, params: scaledata.Params, options) -> None:
        from deals.models import Registration

        if connection.vendor != "postgresql":
            self.stderr.write("--check reads the marker that only PostgreSQL keeps (a table comment).")
            sys.exit(1)
        found = scaledata.read_marker(connection)
        wanted = {"seed": params.seed, "dealers": params.dealers, "registrations": params.registrations}
        if options["today"]:
            wanted["today"] = params.today
        if options["big_dealer_registrations"]:
            wanted["big"] = params.big
        if found is None:
            self.stdout.write("no generated data set here")
            sys.exit(1)
        differs = {k: (found[k], v) for k, v in wanted.items() if found[k] != v}
        # the generated rows have ids 1..N; what a load test submitted afterwards (higher ids) does
        # not make it another data set
        count = Registration.objects.filter(pk__lte=params.registrations).count()
        if differs or count != params.registrations:
            detail = ", ".join(f"{k}={have} (wanted {want})" for k, (have, want) in differs.items())
            self.stdout.write(f"a different data set is here: {detail or f'{count:,} registrations'}")
            sys.exit(1)
        self.stdout.write(
            f"present: seed={found['seed']} dealers={found['dealers']} registrations={found['registrations']} "
            f"today={found['today']} big={found['big']}"
        )

    def _report(self, result: dict, params: scaledata.Params) -> None:
        write = self.stdout.write
        write("\nrows per table:")
        for table, count in sorted(result["counts"].items(), key=lambda kv: -kv[1]):
            write(f"  {table:40s} {count:>12,}")
        write(f"  {'total':40s} {sum(result['counts'].values()):>12,}")
        write("\ntimes (s):")
        for label, seconds in result["timings"].items():
            write(f"  {label:40s} {seconds:>12.1f}")
        write(f"  {'(COPY, on the background thread)':40s} {result['copy_seconds']:>12.1f}")
        if self.verbosity >= 2:
            write("slowest index builds / constraint checks after the load:")
            for seconds, statement in result["slowest_restores"]:
                write(f"  {seconds:6.1f} s  {statement[:110]}")
        write(f"peak RSS: {result['peak_rss_mb']:.0f} MB")
        big = result["big_dealer"]
        write(
            self.style.SUCCESS(
                f"\nThe big dealer: {big['name']} (organisation id {big['id']}, {big['registrations']:,} "
                f"registrations; its dealer admin is {big['admin']}). Password for everyone: {scaledata.PASSWORD}. "
                f"Data 'now': {params.today} {scaledata.NOW_HOUR:02d}:00 local time."
            )
        )


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS
