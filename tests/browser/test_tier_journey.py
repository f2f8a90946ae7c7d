"""The tier pages through the browser: a dealer admin finds its tier, its scores, what it still needs
and its badge; its partner manager finds the same evaluation from the dealer list."""

from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from dealers.models import Organisation
from tests.browser.conftest import PHONE
from tests.browser.test_journeys import (  # noqa: F401
    DEALER_ADMIN,
    PARTNER_MANAGER,
    VAN_DER_BERG,
    log_in,
    log_out,
    no_staff_mfa,
)
from tests.tier_factories import certify, sale
from tiers import services
from tiers.selectors import next_tier_gap

SMALLER_DEALER = "Smit Elektro"
SMALLER_DEALER_USER = "jan.smit@smitelektro.example"


def evaluate_today(dealer):
    """The demo may not hold tier data yet: give the dealer this year's sales and run today's evaluation."""
    today = timezone.localdate()
    sale(dealer, "180000", today - timedelta(days=20), registered=True)
    sale(dealer, "95000", today - timedelta(days=70))
    certify(dealer, "journey-installer", today + timedelta(days=200))
    services.tiers_recompute(day=today)
    return next_tier_gap(dealer)


def test_dealer_sees_its_tier_gap_and_badge(portal, page, new_page, shot, no_staff_mfa):  # noqa: F811
    dealer = Organisation.objects.get(name=VAN_DER_BERG)
    gap = evaluate_today(dealer)
    assert gap.evaluation is not None and gap.headline

    log_in(page, portal.url, DEALER_ADMIN)
    card = page.locator("section.card", has=page.get_by_role("heading", name="Your tier"))
    expect(card.locator(".tier-name")).to_have_text(gap.tier.name)
    expect(card.get_by_text(gap.summary)).to_be_visible()
    shot(page, "home")

    page.locator(".mainnav").get_by_role("link", name="My tier").click()
    expect(page).to_have_url(f"{portal.url}/tier/")
    expect(page.get_by_role("heading", name="Your tier", exact=True)).to_be_visible()
    expect(page.locator(".tier-card .tier-name")).to_have_text(gap.tier.name)
    revenue = page.locator("table.scores tr", has=page.get_by_role("rowheader", name="Revenue, trailing 12 months"))
    expect(revenue).to_be_visible()
    expect(revenue.locator("td").first).to_contain_text("€")
    expect(page.locator(".gap-headline")).to_have_text(gap.headline)
    expect(page.get_by_role("heading", name="Tier history")).to_be_visible()
    expect(page.get_by_role("cell", name="€180,000.00")).to_be_visible()  # a sale behind the revenue

    badge = page.get_by_role("img", name=f"{gap.tier.name} partner badge")
    expect(badge).to_be_visible()
    assert badge.evaluate("img => img.complete && img.naturalWidth > 0")
    response = page.request.get(f"{portal.url}/tier/badge.svg")
    assert response.ok and response.headers["content-type"] == "image/svg+xml"
    assert f"{gap.tier.name} partner" in response.text()
    expect(page.get_by_text("Use it in your marketing")).to_be_visible()
    shot(page, "tier")
    log_out(page, portal.url)

    # a dealer below the top, on a phone: what it still needs, with the alternatives
    smaller = next_tier_gap(Organisation.objects.get(name=SMALLER_DEALER))
    assert smaller.target is not None and smaller.kind != "top"
    phone = new_page(viewport=PHONE, suffix="-smaller-dealer-phone")
    log_in(phone, portal.url, SMALLER_DEALER_USER)
    phone.locator(".mainnav").get_by_role("link", name="My tier").click()
    expect(phone.locator(".tier-card .tier-name")).to_have_text(smaller.tier.name)
    expect(phone.locator(".gap-headline")).to_have_text(smaller.headline)
    for step in smaller.alternatives:
        expect(phone.locator("ul.steps li", has_text=step.text)).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"


def test_partner_manager_finds_the_evaluation_from_the_dealer_list(portal, page, shot, no_staff_mfa):  # noqa: F811
    dealer = Organisation.objects.get(name=VAN_DER_BERG)
    gap = evaluate_today(dealer)

    log_in(page, portal.url, PARTNER_MANAGER)
    page.locator(".mainnav").get_by_role("link", name="Dealers").click()
    page.get_by_label("Tier").select_option(label=gap.tier.name)
    page.get_by_role("button", name="Filter").click()
    row = page.locator("table tbody tr", has=page.get_by_role("link", name=VAN_DER_BERG))
    expect(row).to_contain_text(gap.tier.name)
    shot(page, "dealers")

    row.get_by_role("link", name=VAN_DER_BERG).click()
    tier_card = page.locator("section.card", has=page.get_by_role("heading", name="Tier", exact=True))
    expect(tier_card.locator(".tier-name")).to_have_text(gap.tier.name)
    tier_card.get_by_role("link", name="Evaluation, scores and sales").click()
    expect(page).to_have_url(f"{portal.url}/dealers/{dealer.pk}/tier/")
    expect(page.locator(".gap-headline")).to_have_text(gap.headline)
    page.get_by_role("link", name="Amount").click()
    expect(page).to_have_url(f"{portal.url}/dealers/{dealer.pk}/tier/?sort=-amount#sales")
    shot(page, "evaluation")
    log_out(page, portal.url)
