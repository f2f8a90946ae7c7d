"""A channel conflict, end to end: two dealers register one customer in different spellings; the
second dealer is told only that review is needed; its partner manager sees both registrations side
by side and escalates; the regional director awards it in the admin, because the customer chose;
both dealers see the outcome, the loser without the winner's name."""

import re

from playwright.sync_api import expect

from deals.models import Conflict, Registration
from tests.browser.test_journeys import DEALER_USER, REGIONAL_DIRECTOR, log_in, log_out, no_staff_mfa  # noqa: F401

SECOND_DEALER = "jan.smit@smitelektro.example"  # Smit Elektro, partner manager Femke Mulder
SECOND_PM = "femke.mulder@vendor.example"


def register(page, base_url, customer_name, postcode):
    page.goto(f"{base_url}/registrations/new/")
    page.get_by_label("Customer name").fill(customer_name)
    page.get_by_label("Postcode").fill(postcode)
    page.get_by_label("City").fill("Utrecht")
    page.get_by_label("Contact person").fill("Annelies Brink")
    page.get_by_label("Contact email").fill("annelies@oudwijk.example")
    row = page.locator("table.lines tbody tr").first
    row.locator("select").select_option(label="AeroTherm 8 kW lucht/water-warmtepomp (HP-AW08)")
    row.locator("input[name$='-quantity']").fill("1")
    page.get_by_label("Expected close date").fill("2027-03-01")
    page.get_by_role("button", name="Register the deal").click()
    expect(page.get_by_text(re.compile(r"REG-\d{4}-\d{6} is registered"))).to_be_visible()
    return Registration.objects.get(customer__name=customer_name)


def test_conflict_from_two_registrations_to_the_directors_award(portal, new_page, shot, no_staff_mfa):  # noqa: F811
    first_dealer = new_page(suffix="-first-dealer")
    log_in(first_dealer, portal.url, DEALER_USER)
    first = register(first_dealer, portal.url, "Tandartspraktijk Oudwijk B.V.", "3581 KM")

    second_dealer = new_page(suffix="-second-dealer")
    log_in(second_dealer, portal.url, SECOND_DEALER)
    second = register(second_dealer, portal.url, "tandartspraktijk oudwijk", "3581KM")
    expect(second_dealer.get_by_text("needs a further review because of a possible overlap")).to_be_visible()
    expect(second_dealer.get_by_text("Van der Berg")).to_have_count(0)
    expect(second_dealer.get_by_text(first.reference)).to_have_count(0)
    shot(second_dealer, "told-only-that-review-is-needed")
    assert Conflict.objects.get(registration=second, other=first).kind == "conflict"

    reviewer = new_page(suffix="-partner-manager")
    log_in(reviewer, portal.url, SECOND_PM)
    reviewer.locator(".mainnav").get_by_role("link", name="Review queue").click()
    row = reviewer.locator("tr", has=reviewer.get_by_role("link", name=second.reference))
    expect(row.get_by_text("Conflict")).to_be_visible()
    row.get_by_role("link", name=second.reference).click()
    side = reviewer.locator("table.side-by-side").first
    expect(side.get_by_text(first.reference)).to_be_visible()
    expect(side.get_by_text("Van der Berg Installatietechniek B.V.")).to_be_visible()
    expect(reviewer.get_by_text(f"the earliest submission wins — {first.reference}")).to_be_visible()
    reviewer.get_by_label("Internal note (required to escalate)").first.fill(
        "Customer called: they want Smit Elektro for the installation."
    )
    shot(reviewer, "side-by-side")
    reviewer.get_by_role("button", name="Escalate to the regional director").first.click()
    expect(reviewer.get_by_text(f"{second.reference} is escalated to the regional director")).to_be_visible()

    director = new_page(suffix="-regional-director")
    log_in(director, portal.url, REGIONAL_DIRECTOR)
    director.goto(f"{portal.url}/admin/deals/conflict/")
    director.get_by_role("link", name=second.reference).first.click()
    expect(director.get_by_text(first.reference).first).to_be_visible()
    director.locator(f"input[name=winner][value='{second.pk}']").check()
    director.get_by_label("The customer chose this dealer").check()
    director.locator("textarea[name=note]").fill("The customer's written choice is in the CRM.")
    shot(director, "admin-side-by-side")
    director.get_by_role("button", name="Record the decision").click()
    expect(director.locator(".messagelist")).to_contain_text(second.reference)

    second_dealer.goto(f"{portal.url}/registrations/{second.pk}/")
    expect(second_dealer.get_by_text("Protected until")).to_be_visible()
    expect(second_dealer.get_by_text("Van der Berg")).to_have_count(0)
    first_dealer.goto(f"{portal.url}/registrations/{first.pk}/")
    expect(first_dealer.get_by_text("cannot be protected for you")).to_be_visible()
    expect(first_dealer.get_by_text("Smit Elektro")).to_have_count(0)
    expect(first_dealer.get_by_text("customer called")).to_have_count(0)
    shot(first_dealer, "loser-sees-a-neutral-outcome")
    shot(second_dealer, "winner-sees-the-protection")
    conflict = Conflict.objects.get(registration=second)
    assert conflict.customer_chose and conflict.winner_id == second.pk
    for page in (first_dealer, second_dealer):
        log_out(page, portal.url)
