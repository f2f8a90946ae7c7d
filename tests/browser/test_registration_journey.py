"""Deal registration through the browser: a dealer registers (adding a line with JavaScript and
seeing the value prefilled), the partner manager approves from the review page, and the dealer
sees the protection."""

import re
from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from deals.models import Registration
from tests.browser.test_journeys import DEALER_USER, PARTNER_MANAGER, log_in, log_out, no_staff_mfa  # noqa: F401


def test_dealer_registers_partner_manager_approves_dealer_sees_protection(portal, page, shot, no_staff_mfa):  # noqa: F811
    log_in(page, portal.url, DEALER_USER)
    page.locator(".mainnav").get_by_role("link", name="My registrations").click()
    page.get_by_role("link", name="Register a deal").click()
    expect(page.get_by_role("heading", name="Register a deal")).to_be_visible()

    page.get_by_label("Customer name").fill("Tandartspraktijk Oudwijk")
    page.get_by_label("Postcode").fill("3581 KM")
    page.get_by_label("City").fill("Utrecht")
    page.get_by_label("Contact person").fill("Annelies Brink")
    page.get_by_label("Contact email").fill("annelies@oudwijk.example")
    rows = page.locator("table.lines tbody tr")
    rows.nth(0).locator("select").select_option(label="AeroTherm 8 kW lucht/water-warmtepomp (HP-AW08)")
    rows.nth(0).locator("input[name$='-quantity']").fill("2")
    expect(rows.nth(0).locator("input[name$='-value']")).to_have_value("12900.00")  # list price x quantity
    page.get_by_role("button", name="Add a product line").click()
    expect(rows).to_have_count(2)  # added in the page, no reload
    rows.nth(1).locator("select").select_option(label="FlowAir gebouwregeling (CL-CTRL)")
    rows.nth(1).locator("input[name$='-quantity']").fill("1")
    rows.nth(1).locator("input[name$='-value']").fill("2000")  # the dealer's own price wins
    close = (timezone.localdate() + timedelta(days=40)).isoformat()
    page.get_by_label("Expected close date").fill(close)
    shot(page, "form")
    page.get_by_role("button", name="Register the deal").click()

    expect(page.get_by_text(re.compile(r"REG-\d{4}-\d{6} is registered"))).to_be_visible()
    registration = Registration.objects.get(customer__name="Tandartspraktijk Oudwijk")
    assert registration.expected_value == 14900
    expect(page.get_by_text("Waiting for review")).to_be_visible()
    log_out(page, portal.url)

    log_in(page, portal.url, PARTNER_MANAGER)
    page.locator(".mainnav").get_by_role("link", name="Review queue").click()
    page.get_by_role("link", name=registration.reference).click()
    page.get_by_label("Reason (the dealer sees this)").fill("Approved: good luck with the tender.")
    page.get_by_label("Internal note (vendor staff only)").fill("Checked against direct accounts.")
    page.get_by_role("button", name="Approve and protect").click()
    expect(page.get_by_text(f"{registration.reference} is approved and protected.")).to_be_visible()
    shot(page, "approved-by-pm")
    log_out(page, portal.url)

    log_in(page, portal.url, DEALER_USER)
    page.goto(f"{portal.url}/registrations/{registration.pk}/")
    expect(page.get_by_text("Protected until")).to_be_visible()
    expect(page.get_by_text("180 days left")).to_be_visible()  # the heat-pump line protects for 180 days
    expect(page.get_by_text("Approved: good luck with the tender.")).to_be_visible()
    expect(page.get_by_text("Checked against direct accounts.")).to_have_count(0)
    shot(page, "dealer-sees-protection")
