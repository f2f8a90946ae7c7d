from datetime import date
from decimal import Decimal

from deals.models import ProductLine
from tests import factories
from tiers.models import Certification, CertificationHolding, Sale, SatisfactionScore

_counter = iter(range(1, 10**9))


def line() -> ProductLine:
    return ProductLine.objects.get_or_create(code="tier-line", defaults={"name": "Tier line"})[0]


def sale(organisation, amount, sold_on: date, *, registered=False, **extra) -> Sale:
    return Sale.objects.create(
        erp_line_id=f"ERP-{next(_counter)}",
        sold_on=sold_on,
        reseller=organisation,
        customer_name="Klant B.V.",
        customer_country="NL",
        amount=Decimal(amount),
        registered_before_sale=registered,
        **{"product_line": line(), **extra},
    )


def certify(organisation, code, valid_until: date):
    certification = Certification.objects.get_or_create(code=code, defaults={"name": code.title()})[0]
    person = factories.dealer_user(organisation)
    return CertificationHolding.objects.create(
        organisation=organisation, person=person, certification=certification, valid_until=valid_until
    )


def satisfaction(organisation, score, recorded_on: date):
    return SatisfactionScore.objects.create(organisation=organisation, score=score, recorded_on=recorded_on)
