"""Demo products and registrations in every state, for `make run` (called by seed_demo).

Registrations are made through the services, so each has its history and emails; only the
clock-dependent fields are moved afterwards (an overdue review, a protection about to end).
"""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from dealers.models import Membership, Organisation
from deals import services
from deals.models import Holiday, Product, ProductLine, ProgrammeSettings, Registration

LINES = [
    # name, code, protection days (None: the default), direct only, products
    (
        "Warmtepompen",
        "heat-pumps",
        180,
        False,
        [
            ("HP-AW08", "AeroTherm 8 kW lucht/water-warmtepomp", "6450.00"),
            ("HP-AW14", "AeroTherm 14 kW lucht/water-warmtepomp", "9875.00"),
            ("HP-GW22", "GeoTherm 22 kW bodemwarmtepomp", "17400.00"),
        ],
    ),
    (
        "Klimaatbeheersing",
        "climate",
        None,
        False,
        [
            ("CL-VRF10", "FlowAir VRF buitenunit 10 kW", "7200.00"),
            ("CL-CAS25", "FlowAir cassette-unit 2,5 kW", "1180.00"),
            ("CL-CTRL", "FlowAir gebouwregeling", "2350.00"),
        ],
    ),
    (
        "Zonne-energie",
        "solar",
        None,
        False,
        [
            ("PV-410", "SunLine 410 Wp paneel", "189.00"),
            ("PV-INV10", "SunLine omvormer 10 kW", "2140.00"),
        ],
    ),
    (
        "Industriële besturing",
        "industrial",
        None,
        True,
        [
            ("IC-PLC9", "Cortex PLC 9000", "12800.00"),
        ],
    ),
]

HOLIDAYS = [
    ("2026-12-25", "Eerste Kerstdag"),
    ("2026-12-26", "Tweede Kerstdag"),
    ("2027-01-01", "Nieuwjaarsdag"),
    ("2027-03-29", "Tweede Paasdag"),
    ("2027-04-27", "Koningsdag"),
    ("2027-05-06", "Hemelvaartsdag"),
    ("2027-05-17", "Tweede Pinksterdag"),
]

CUSTOMERS = [
    ("Bakkerij Jansen B.V.", "Utrecht", "3511 AB", "NL", "Marleen Jansen"),
    ("Gemeente Houten", "Houten", "3995 DZ", "NL", "Erik de Wit"),
    ("Zorggroep Het Baken", "Zeist", "3701 CE", "NL", "Ingrid Mol"),
    ("Hotel De Bilt", "De Bilt", "3731 AA", "NL", "Rob Schouten"),
    ("Sportcentrum Nieuwegein", "Nieuwegein", "3431 HA", "NL", "Samira Amrani"),
    ("Kantoorpand Maliebaan VvE", "Utrecht", "3581 CN", "NL", "Pieter Groen"),
    ("Basisschool De Regenboog", "Amersfoort", "3811 KL", "NL", "Hanneke Vos"),
    ("Autobedrijf Van Dam", "IJsselstein", "3401 BA", "NL", "Gert van Dam"),
    ("Drukkerij Peeters NV", "Antwerpen", "2000", "BE", "Kris Peeters"),
    ("Brouwerij De Klok", "Gent", "9000", "BE", "Lies Vermeulen"),
]

# (dealer admin email, [(customer index, product sku, quantity, stage, what happens)])
PLAN = [
    (
        "eva.vanderberg@vanderberg.example",
        [
            (0, "HP-AW08", 2, "mid", "submitted"),
            (1, "CL-VRF10", 4, "late", "overdue"),
            (2, "HP-GW22", 1, "early", "info_requested"),
            (3, "CL-CAS25", 12, "late", "approved"),
            (4, "PV-410", 120, "mid", "expiring"),
            (5, "CL-CTRL", 3, "late", "won"),
            (6, "HP-AW14", 2, "mid", "lost"),
            (7, "PV-INV10", 2, "early", "rejected"),
            (0, "CL-CAS25", 4, "early", "withdrawn"),
            (3, "HP-AW14", 1, "mid", "stale"),
        ],
    ),
    (
        "henk.jansen@jansenklimaat.example",
        [
            (6, "CL-VRF10", 2, "mid", "submitted"),
            (1, "HP-AW08", 3, "late", "approved"),
        ],
    ),
    (
        "kees.meijer@meijerfacility.example",
        [
            (4, "PV-410", 60, "early", "submitted"),
            (5, "CL-VRF10", 1, "mid", "overdue"),
        ],
    ),
    (
        "wim.janssens@janssenselektro.example",
        [
            (8, "PV-INV10", 3, "mid", "submitted"),
            (9, "HP-AW14", 2, "late", "approved"),
        ],
    ),
]


# Conflicts for the demo: (dealer admin email, customer as they typed it, sku, then what the reviewer did)
CONFLICTS = [
    # a live conflict: Van der Berg registered Bakkerij Jansen B.V. (heat pumps) first
    (
        "henk.jansen@jansenklimaat.example",
        ("bakkerij jansen bv", "Utrecht", "3511 AB", "NL", "M. Jansen"),
        "HP-AW14",
        "open",
    ),
    # a related registration: same customer, another product line
    (
        "kees.meijer@meijerfacility.example",
        ("Bakkerij Jansen", "Utrecht", "3511AB", "NL", "Marleen Jansen"),
        "PV-410",
        "open",
    ),
    # an escalation waiting for the regional director in the admin
    (
        "kees.meijer@meijerfacility.example",
        ("Hotel de Bilt BV", "De Bilt", "3731 AA", "NL", "R. Schouten"),
        "CL-CAS25",
        "escalate",
    ),
]


def seed_conflicts() -> int:
    from deals import conflicts

    created = 0
    today = timezone.localdate()
    for email, (name, city, postcode, country, contact), sku, then in CONFLICTS:
        dealer = Membership.objects.select_related("organisation").get(user__email=email)
        if Registration.objects.filter(organisation=dealer.organisation, customer__name=name).exists():
            continue
        registration = services.registration_submit(
            actor=dealer.user,
            customer=services.CustomerData(name=name, city=city, postcode=postcode, country=country),
            contact_name=contact,
            contact_email="inkoop@" + name.split()[0].lower() + ".example",
            lines=[services.LineData(product=Product.objects.get(sku=sku), quantity=4)],
            expected_close_date=today + timedelta(days=60),
            decision_stage="mid",
        )
        created += 1
        if then == "escalate":
            conflicts.conflict_escalate(
                registration=registration,
                actor=dealer.organisation.account_manager,
                note="Both dealers visited the hotel; the customer says it prefers Meijer's maintenance offer.",
            )
    return created


def seed_catalogue() -> int:
    created = 0
    ProgrammeSettings.load()
    for day, name in HOLIDAYS:
        created += Holiday.objects.get_or_create(date=day, defaults={"name": name})[1]
    for name, code, days, direct_only, products in LINES:
        line, new = ProductLine.objects.get_or_create(
            code=code, defaults={"name": name, "protection_days": days, "direct_only": direct_only}
        )
        created += new
        for sku, product_name, price in products:
            created += Product.objects.get_or_create(
                sku=sku, defaults={"line": line, "name": product_name, "list_price": Decimal(price)}
            )[1]
    return created


def _reviewer(organisation: Organisation):
    return organisation.account_manager


def seed_registrations() -> int:
    created = 0
    today = timezone.localdate()
    now = timezone.now()
    for admin_email, plan in PLAN:
        membership = Membership.objects.select_related("organisation", "user").get(user__email=admin_email)
        dealer, organisation = membership.user, membership.organisation
        if Registration.objects.filter(organisation=organisation).exists():
            continue
        reviewer = _reviewer(organisation)
        for index, sku, quantity, stage, fate in plan:
            name, city, postcode, country, contact = CUSTOMERS[index]
            registration = services.registration_submit(
                actor=dealer,
                customer=services.CustomerData(name=name, city=city, postcode=postcode, country=country),
                contact_name=contact,
                contact_email=contact.lower().replace(" ", ".") + "@customer.example",
                lines=[services.LineData(product=Product.objects.get(sku=sku), quantity=quantity)],
                expected_close_date=today + timedelta(days=30 + 7 * index),
                decision_stage=stage,
            )
            created += 1
            if fate == "overdue":
                registration.events.update(created_at=now - timedelta(days=4))
                Registration.objects.filter(pk=registration.pk).update(
                    first_submitted_at=now - timedelta(days=4),
                    review_started_at=now - timedelta(days=4),
                    review_remind_at=now - timedelta(days=3),
                    review_due_at=now - timedelta(hours=5),
                )
            elif fate == "info_requested":
                services.registration_request_info(
                    registration=registration,
                    actor=reviewer,
                    reason="Which building is this for, and is the customer's architect already involved?",
                    internal_note="Possibly the same site as an older registration; check before approving.",
                )
            elif fate == "rejected":
                services.registration_reject(
                    registration=registration,
                    actor=reviewer,
                    reason="This customer buys inverters directly from us under a framework contract.",
                )
            elif fate == "withdrawn":
                services.registration_withdraw(registration=registration, actor=dealer, reason="Customer postponed.")
            elif fate in ("approved", "expiring", "won", "lost", "stale"):
                services.registration_approve(registration=registration, actor=reviewer, reason="Approved. Good luck!")
                if fate == "expiring":
                    Registration.objects.filter(pk=registration.pk).update(protected_until=today + timedelta(days=5))
                elif fate == "stale":
                    Registration.objects.filter(pk=registration.pk).update(last_activity_at=now - timedelta(days=60))
                elif fate == "won":
                    services.registration_report_won(
                        registration=registration, actor=dealer, value=registration.expected_value, won_on=today
                    )
                elif fate == "lost":
                    services.registration_report_lost(
                        registration=registration, actor=dealer, reason="price", competitor="Nordic Heat"
                    )
    return created
