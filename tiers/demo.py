"""Demo tier data for `make run` (called by seed_demo): two years of the vendor's sales, certifications
and satisfaction scores, so that dealers sit in every tier, one is in a grace period and one has an
override. Sales are spread deterministically; nothing random, so every demo looks the same."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from dealers.models import Membership, Organisation, User
from deals.models import ProductLine
from tiers import services
from tiers.models import Certification, CertificationHolding, DealerStanding, Sale, SatisfactionScore, Tier

CERTIFICATIONS = [
    ("hp-installer", "Warmtepomp-installateur"),
    ("vrf-specialist", "VRF-specialist"),
    ("solar-installer", "Zonne-energie-installateur"),
]

# dealer name: (yearly revenue this year, last year, share registered before the sale, certifications, satisfaction)
PROFILES = {
    "Van der Berg Installatietechniek B.V.": (640_000, 520_000, 0.85, 3, 5),
    "Jansen & Zn. Klimaattechniek": (310_000, 300_000, 0.7, 1, 4),
    "Janssens Elektro BV": (280_000, 220_000, 0.8, 1, 4),
    "Maes Installaties": (120_000, 100_000, 0.5, 0, 4),
    "Smit Elektro": (60_000, 0, 0.3, 0, 3),
    "Meijer Facility Solutions": (90_000, 110_000, 0.4, 1, 3),
    "Bos Techniek Eindhoven": (40_000, 90_000, 0.2, 0, 2),
    "Wouters & Co": (20_000, 60_000, 0.1, 0, 3),
    "Dubois Techniques SRL": (30_000, 0, 0.5, 0, 4),
    # De Groot sold a lot until recently: Gold half a year ago, below Gold now (grace period)
    "De Groot Bouwsystemen B.V.": (380_000, 450_000, 0.9, 2, 5),
}
GRACE_DEALER = "De Groot Bouwsystemen B.V."
OVERRIDE_DEALER = "Meijer Facility Solutions"


def seed_tiers() -> int:
    if Sale.objects.filter(erp_line_id__startswith="DEMO-").exists():
        return 0
    today = timezone.localdate()
    lines = list(ProductLine.objects.filter(direct_only=False).order_by("code"))
    certifications = [
        Certification.objects.get_or_create(code=code, defaults={"name": name})[0] for code, name in CERTIFICATIONS
    ]
    created = 0
    sales = []
    for name, (this_year, last_year, compliant, certs, happy) in PROFILES.items():
        organisation = Organisation.objects.get(name=name)
        distributor = organisation.distributors.first()
        for year_offset, total in ((0, this_year), (365, last_year)):
            if not total:
                continue
            for month in range(12):  # a sale a month, growing towards the recent months
                weight = Decimal(month + 1) / Decimal(78)  # 1 + 2 + … + 12 = 78
                if name == GRACE_DEALER and year_offset == 0:
                    weight = Decimal(12 - month) / Decimal(78)  # the grace dealer's sales are fading
                sold_on = today - timedelta(days=year_offset + 5 + (11 - month) * 30)
                sales.append(
                    Sale(
                        erp_line_id=f"DEMO-{organisation.pk}-{year_offset}-{month}",
                        sold_on=sold_on,
                        reseller=organisation,
                        distributor=distributor,
                        customer_name=f"Klant {month + 1} van {organisation.city}",
                        customer_city=organisation.city,
                        customer_country=organisation.country,
                        product_line=lines[month % len(lines)],
                        amount=(Decimal(total) * weight).quantize(Decimal("0.01")),
                        registered_before_sale=(month / 12) < compliant,
                    )
                )
        person = Membership.objects.filter(organisation=organisation).select_related("user").first().user
        for index, certification in enumerate(certifications[:certs]):
            # the grace dealer's second certification lapsed ten days ago: it no longer meets Gold's minimum
            lapsed = name == GRACE_DEALER and index == 1
            CertificationHolding.objects.get_or_create(
                person=person,
                certification=certification,
                defaults={
                    "organisation": organisation,
                    "valid_until": today - timedelta(days=10) if lapsed else today + timedelta(days=400),
                },
            )
        for i in range(3):
            SatisfactionScore.objects.create(
                organisation=organisation,
                score=max(1, min(5, happy - (i == 2))),
                recorded_on=today - timedelta(days=30 * i + 10),
            )
    Sale.objects.bulk_create(sales)
    created += len(sales)
    # Half a year ago the grace dealer still sold like a Gold partner: evaluate as of then, with its
    # then-current sales, so it holds Gold today and tonight's run starts its grace period.
    grace = Organisation.objects.get(name=GRACE_DEALER)
    then = today - timedelta(days=180)
    Sale.objects.create(
        erp_line_id=f"DEMO-{grace.pk}-boost",
        sold_on=then - timedelta(days=10),
        reseller=grace,
        customer_name="Woningcorporatie Zwolle",
        customer_city="Zwolle",
        customer_country="NL",
        product_line=lines[0],
        amount=Decimal("400000.00"),
        registered_before_sale=True,
    )
    created += 1
    services.tiers_recompute(day=then)
    services.tiers_recompute(day=today - timedelta(days=1))  # last night's run; tonight's is the worker's
    admin = User.objects.filter(groups__name="Channel admin").first()
    if (
        admin
        and not DealerStanding.objects.filter(organisation__name=OVERRIDE_DEALER, override_tier__isnull=False).exists()
    ):
        services.tier_override(
            organisation=Organisation.objects.get(name=OVERRIDE_DEALER),
            tier=Tier.objects.get(name="Silver"),
            until=today + timedelta(days=60),
            reason="Launch partner for the new FlowAir range in Rotterdam; review after the launch.",
            actor=admin,
        )
    return created


# dealer name: log-ins a month per person (0: nobody logs in; those dealers show as inactive)
LOGINS_A_MONTH = {
    "Van der Berg Installatietechniek B.V.": 12,
    "Jansen & Zn. Klimaattechniek": 6,
    "Janssens Elektro BV": 8,
    "Maes Installaties": 3,
    "Smit Elektro": 4,
    "Meijer Facility Solutions": 2,
    "Bos Techniek Eindhoven": 1,
    "De Groot Bouwsystemen B.V.": 5,
}
PLAN_DEALER = "Bos Techniek Eindhoven"


def seed_activity() -> int:
    """Portal log-ins over the last year and the improvement plan of the dealer that is on one, so
    that the dashboards' log-in figures and attention flags have something to show."""
    from dealers.models import ImprovementPlan, LoginRecord

    if LoginRecord.objects.filter(user__email__endswith=".example", at__lt=timezone.now() - timedelta(days=1)).exists():
        return 0
    now = timezone.now()
    records = []
    for name, per_month in LOGINS_A_MONTH.items():
        organisation = Organisation.objects.get(name=name)
        people = list(Membership.objects.active().filter(organisation=organisation).values_list("user_id", flat=True))
        for person in people:
            for month in range(12):
                for i in range(per_month):
                    at = now - timedelta(days=month * 30 + (i * 29) // max(per_month, 1) + 1, hours=i % 8)
                    records.append(LoginRecord(user_id=person, organisation=organisation, at=at))
    LoginRecord.objects.bulk_create(records)
    created = len(records)
    organisation = Organisation.objects.get(name=PLAN_DEALER)
    if not ImprovementPlan.objects.filter(organisation=organisation).exists():
        ImprovementPlan.objects.create(
            organisation=organisation,
            opened_by=organisation.partner_manager,
            opened_at=now - timedelta(days=40),
            goals="Register every quote above €5,000 in the portal.\n"
            "At least 6 registrations this quarter.\nOne technician certified as heat-pump installer.",
            deadline=timezone.localdate() + timedelta(days=50),
            notes="Revenue halved on last year; the owner wants to continue.",
        )
        created += 1
    return created
