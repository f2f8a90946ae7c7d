#!/usr/bin/env python
"""Enlarge a small development database (e.g. one filled by `seed_demo`) for the load test.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prm_load_dev DJANGO_DEBUG=1 \
        .venv/bin/python tools/load/dev_data.py --dealers 45 --partner-managers 15

The demo has ten resellers and three partner managers, too few for 50 simulated people with one
account each. This adds (idempotently, by e-mail address):

- every vendor staff member without one gets a TOTP authenticator with the secret the tests use
  (tests/conftest.py, with_totp), as vendor staff must log in with a second factor;
- --partner-managers partner managers pm{N}@vendor-load-dev.example, with TOTP;
- --dealers active reseller organisations, each with one dealer user dealer{N}.1@load-dev.example,
  looked after by those partner managers in turn;
- --registrations submitted registrations per new dealer (through deals.services, so the conflict
  check and the notifications run), so that the partner managers' queues are not empty at the start.

Every new account gets --password. Refuses to touch a database whose name does not contain "dev".
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")

TEST_TOTP_SECRET = "JBSWY3DPEHPK3PXP"  # the tests' secret (tests/conftest.py); development data only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dealers", type=int, default=45)
    parser.add_argument("--partner-managers", type=int, default=15)
    parser.add_argument("--registrations", type=int, default=2, help="submitted registrations per new dealer")
    parser.add_argument("--password", default="portal-demo-2026")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    import django

    django.setup()

    from allauth.account.models import EmailAddress
    from allauth.mfa.models import Authenticator
    from allauth.mfa.utils import encrypt
    from django.contrib.auth.models import Group
    from django.db import connection, transaction
    from django.utils import timezone

    from dealers.models import Membership, Organisation, Region, StaffRole, User
    from deals import services
    from deals.models import Product

    name = connection.settings_dict["NAME"] or ""
    if "dev" not in name or name == "prm_bench":
        print(f"refusing: database {name!r} is not a development database (its name must contain 'dev')")
        return 2

    rng = random.Random(args.seed)
    created = {"totp": 0, "partner_managers": 0, "dealers": 0, "registrations": 0}

    def person(email: str, first: str, last: str, *, staff: bool) -> tuple[User, bool]:
        user, new = User.objects.get_or_create(
            email=email, defaults={"first_name": first, "last_name": last, "is_staff": staff}
        )
        if new:
            user.set_password(args.password)
            user.save(update_fields=["password"])
            EmailAddress.objects.get_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
        return user, new

    with transaction.atomic():
        regions = list(Region.objects.order_by("pk"))
        if not regions:
            print("no regions: load the demo data first (manage.py seed_demo)")
            return 2
        pm_group = Group.objects.get(name=StaffRole.PARTNER_MANAGER)
        pms = []
        for n in range(1, args.partner_managers + 1):
            pm, new = person(f"pm{n}@vendor-load-dev.example", "Load", f"Manager {n}", staff=True)
            if new:
                pm.home_region = regions[n % len(regions)]
                pm.save(update_fields=["home_region"])
                pm.groups.add(pm_group)
                created["partner_managers"] += 1
            pms.append(pm)
        for staff in User.objects.filter(is_staff=True, is_active=True):
            if not Authenticator.objects.filter(user=staff, type=Authenticator.Type.TOTP).exists():
                Authenticator.objects.create(
                    user=staff, type=Authenticator.Type.TOTP, data={"secret": encrypt(TEST_TOTP_SECRET)}
                )
                created["totp"] += 1
        new_dealers = []
        for n in range(1, args.dealers + 1):
            region = regions[0]  # Nederland: the registrations below are Dutch customers
            organisation, new = Organisation.objects.get_or_create(
                name=f"Load Dev Dealer {n} B.V.",
                country="NL",
                defaults={
                    "kind": Organisation.Kind.RESELLER,
                    "status": Organisation.Status.ACTIVE,
                    "region": region,
                    "partner_manager": pms[(n - 1) % len(pms)] if pms else None,
                    "city": rng.choice(["Utrecht", "Amersfoort", "Zwolle", "Breda", "Arnhem"]),
                },
            )
            user, _ = person(f"dealer{n}.1@load-dev.example", "Dealer", f"{n}", staff=False)
            if new:
                Membership.objects.get_or_create(
                    user=user, defaults={"organisation": organisation, "role": Membership.Role.DEALER_ADMIN}
                )
                created["dealers"] += 1
                new_dealers.append(user)

    products = list(Product.objects.registrable())
    trades = ["Bakkerij", "Garage", "Installatiebedrijf", "Hotel", "Drukkerij", "Tuincentrum", "Transport"]
    families = ["Jansen", "de Vries", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "Bos"]
    for user in new_dealers:
        for _ in range(args.registrations):
            product = rng.choice(products)
            with transaction.atomic():
                services.registration_submit(
                    actor=User.objects.get(pk=user.pk),
                    customer=services.CustomerData(
                        name=f"{rng.choice(trades)} {rng.choice(families)} {rng.randint(1, 999)} B.V.",
                        city="Utrecht",
                        postcode=f"{rng.randint(1000, 9999)} AB",
                        country="NL",
                        website="",
                        vat_number="",
                        company_number="",
                    ),
                    contact_name="Load Contact",
                    contact_email="contact@customer.example",
                    lines=[services.LineData(product=product, quantity=rng.randint(1, 5), value=None)],
                    expected_close_date=timezone.localdate() + timedelta(days=rng.randint(30, 150)),
                )
            created["registrations"] += 1
    print("created:", ", ".join(f"{k} {v}" for k, v in created.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
