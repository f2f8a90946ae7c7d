"""Demo data for `make run`: vendor staff, two regions and a dozen Dutch and Belgian dealers.

Idempotent: every object is looked up by its natural key first, so running it again changes
nothing. Refuses to run unless DJANGO_DEBUG is on, so it can never touch a production database.
"""

from datetime import date

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from dealers.models import Membership, Organisation, Region, Specialisation, StaffRole, Territory, User

DEMO_PASSWORD = "portal-demo-2026"

STAFF = [
    # email, first, last, roles, home region code
    ("sanne.bakker@vendor.example", "Sanne", "Bakker", [StaffRole.CHANNEL_ADMIN], None),
    ("marieke.devries@vendor.example", "Marieke", "de Vries", [StaffRole.REGIONAL_DIRECTOR], "nl"),
    ("pieter.claes@vendor.example", "Pieter", "Claes", [StaffRole.REGIONAL_DIRECTOR], "be-lu"),
    ("jeroen.visser@vendor.example", "Jeroen", "Visser", [StaffRole.PARTNER_MANAGER], "nl"),
    ("femke.mulder@vendor.example", "Femke", "Mulder", [StaffRole.PARTNER_MANAGER], "nl"),
    ("thomas.peeters@vendor.example", "Thomas", "Peeters", [StaffRole.PARTNER_MANAGER], "be-lu"),
    ("lars.dekker@vendor.example", "Lars", "Dekker", [StaffRole.DIRECT_SALES], "nl"),
]

REGIONS = [
    ("nl", "Nederland", "marieke.devries@vendor.example"),
    ("be-lu", "België & Luxemburg", "pieter.claes@vendor.example"),
]

SPECIALISATIONS = ["Klimaattechniek", "Elektrotechniek", "Gebouwbeheer", "Zonne-energie", "Industriële automatisering"]

# name, kind, status, region, partner manager (None: the regional director), city, country, domain,
# VAT, territory (country, from, to, exclusive), specialisations, distributor, people
ORGANISATIONS = [
    (
        "Holland Technische Groothandel B.V.",
        "distributor",
        "active",
        "nl",
        "jeroen.visser",
        "Nieuwegein",
        "NL",
        "htg.example",
        "NL812345678B01",
        ("NL", "", "", False),
        [],
        None,
        [("Ruud", "Verhoeven", "admin"), ("Anouk", "Kramer", "user")],
    ),
    (
        "Benelux Distributie NV",
        "distributor",
        "active",
        "be-lu",
        "thomas.peeters",
        "Mechelen",
        "BE",
        "beneluxdistributie.example",
        "BE0412345678",
        ("BE", "", "", False),
        [],
        None,
        [("Koen", "Willems", "admin"), ("Els", "Goossens", "user")],
    ),
    (
        "Van der Berg Installatietechniek B.V.",
        "reseller",
        "active",
        "nl",
        "jeroen.visser",
        "Utrecht",
        "NL",
        "vanderberg.example",
        "NL823456789B01",
        ("NL", "3500", "3599", True),
        ["Klimaattechniek", "Elektrotechniek"],
        "Holland Technische Groothandel B.V.",
        [("Eva", "van der Berg", "admin"), ("Daan", "Hendriks", "user"), ("Lotte", "Smits", "user")],
    ),
    (
        "Jansen & Zn. Klimaattechniek",
        "reseller",
        "active",
        "nl",
        "jeroen.visser",
        "Amersfoort",
        "NL",
        "jansenklimaat.example",
        "NL834567890B01",
        ("NL", "3800", "3829", False),
        ["Klimaattechniek"],
        "Holland Technische Groothandel B.V.",
        [("Henk", "Jansen", "admin"), ("Sophie", "de Jong", "user")],
    ),
    (
        "De Groot Bouwsystemen B.V.",
        "reseller",
        "active",
        "nl",
        "femke.mulder",
        "Zwolle",
        "NL",
        "degrootbouw.example",
        "NL845678901B01",
        ("NL", "8000", "8099", True),
        ["Gebouwbeheer"],
        None,
        [("Bram", "de Groot", "admin"), ("Iris", "Vos", "user")],
    ),
    (
        "Smit Elektro",
        "reseller",
        "onboarding",
        "nl",
        "femke.mulder",
        "Groningen",
        "NL",
        "smitelektro.example",
        "",
        ("NL", "9700", "9799", False),
        ["Elektrotechniek"],
        "Holland Technische Groothandel B.V.",
        [("Jan", "Smit", "admin"), ("Noor", "Dijkstra", "user")],
    ),
    (
        "Bos Techniek Eindhoven",
        "reseller",
        "improvement_plan",
        "nl",
        "femke.mulder",
        "Eindhoven",
        "NL",
        "bostechniek.example",
        "NL856789012B01",
        ("NL", "5600", "5699", False),
        ["Industriële automatisering"],
        None,
        [("Mark", "Bos", "admin"), ("Fleur", "Peters", "user")],
    ),
    (
        "Meijer Facility Solutions",
        "reseller",
        "active",
        "nl",
        None,
        "Rotterdam",
        "NL",
        "meijerfacility.example",
        "NL867890123B01",
        ("NL", "3000", "3099", False),
        ["Gebouwbeheer", "Zonne-energie"],
        None,
        [("Kees", "Meijer", "admin"), ("Julia", "van Dijk", "user"), ("Tim", "Brouwer", "user")],
    ),
    (
        "Janssens Elektro BV",
        "reseller",
        "active",
        "be-lu",
        "thomas.peeters",
        "Antwerpen",
        "BE",
        "janssenselektro.example",
        "BE0423456789",
        ("BE", "2000", "2999", True),
        ["Elektrotechniek"],
        "Benelux Distributie NV",
        [("Wim", "Janssens", "admin"), ("Lien", "Maes", "user")],
    ),
    (
        "Maes Installaties",
        "reseller",
        "active",
        "be-lu",
        "thomas.peeters",
        "Gent",
        "BE",
        "maesinstallaties.example",
        "BE0434567890",
        ("BE", "9000", "9099", False),
        ["Klimaattechniek"],
        "Benelux Distributie NV",
        [("Bart", "Maes", "admin"), ("Sofie", "De Smet", "user")],
    ),
    (
        "Wouters & Co",
        "reseller",
        "phasing_out",
        "be-lu",
        "thomas.peeters",
        "Leuven",
        "BE",
        "wouters.example",
        "BE0445678901",
        ("BE", "3000", "3099", False),
        ["Zonne-energie"],
        None,
        [("Jef", "Wouters", "admin"), ("An", "Claes", "user")],
    ),
    (
        "Dubois Techniques SRL",
        "reseller",
        "onboarding",
        "be-lu",
        None,
        "Liège",
        "BE",
        "duboistechniques.example",
        "BE0456789012",
        ("BE", "4000", "4999", True),
        ["Elektrotechniek"],
        "Benelux Distributie NV",
        [("Claire", "Dubois", "admin"), ("Luc", "Lambert", "user")],
    ),
]


def _email(first: str, last: str, domain: str) -> str:
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    return f"{local}@{domain}"


class Command(BaseCommand):
    help = "Load demo users, regions and dealers (idempotent; development only)."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo loads demo accounts with a known password: it only runs with DJANGO_DEBUG=1.")
        from deals import demo

        with transaction.atomic():
            created = self._seed() + demo.seed_catalogue()
        with transaction.atomic():
            created += demo.seed_registrations()
        with transaction.atomic():
            created += demo.seed_conflicts()
        from tiers import demo as tier_demo

        with transaction.atomic():
            created += tier_demo.seed_tiers()
        with transaction.atomic():
            created += tier_demo.seed_activity()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready ({created} new objects). Password for every demo log-in: {DEMO_PASSWORD}"
            )
        )

    def _user(self, email, first, last, *, is_staff=False) -> tuple[User, bool]:
        user, created = User.objects.get_or_create(
            email=email, defaults={"first_name": first, "last_name": last, "is_staff": is_staff}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
            EmailAddress.objects.get_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
        return user, created

    def _seed(self) -> int:
        created = 0
        staff = {}
        for email, first, last, roles, _region in STAFF:
            user, new = self._user(email, first, last, is_staff=True)
            created += new
            user.groups.add(*Group.objects.filter(name__in=roles))
            staff[email.split("@")[0]] = user
        regions = {}
        for code, name, director in REGIONS:
            region, new = Region.objects.get_or_create(
                code=code, defaults={"name": name, "regional_director": User.objects.get(email=director)}
            )
            regions[code] = region
            created += new
        for email, *_rest, region_code in STAFF:
            if region_code:
                User.objects.filter(email=email, home_region__isnull=True).update(home_region=regions[region_code])
        specialisations = {}
        for name in SPECIALISATIONS:
            specialisations[name], new = Specialisation.objects.get_or_create(name=name)
            created += new
        for (
            name,
            kind,
            status,
            region,
            manager,
            city,
            country,
            domain,
            vat,
            territory,
            specs,
            distributor,
            people,
        ) in ORGANISATIONS:
            org, new = Organisation.objects.get_or_create(
                name=name,
                country=country,
                defaults={
                    "kind": kind,
                    "status": status,
                    "region": regions[region],
                    "partner_manager": staff[manager] if manager else None,
                    "city": city,
                    "website": f"https://www.{domain}",
                    "vat_number": vat,
                    "joined_on": date(2024 + len(name) % 3, 1 + len(name) % 12, 1 + len(city) % 28),
                },
            )
            created += new
            if new:
                t_country, t_from, t_to, exclusive = territory
                Territory.objects.create(
                    organisation=org, country=t_country, postcode_from=t_from, postcode_to=t_to, exclusive=exclusive
                )
                org.specialisations.add(*(specialisations[s] for s in specs))
                if distributor:
                    org.distributors.add(Organisation.objects.get(name=distributor))
            for first, last, role in people:
                user, new = self._user(_email(first, last, domain), first, last)
                created += new
                Membership.objects.get_or_create(user=user, defaults={"organisation": org, "role": role})
        return created
