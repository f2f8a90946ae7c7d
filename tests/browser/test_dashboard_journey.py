"""The dashboards through the browser, on the demo data: the dealer admin's, the partner manager's
and the regional director's, each with its charts, a figure clicked through to the list behind it,
and a CSV download."""

from playwright.sync_api import expect

from tests.browser.test_journeys import (  # noqa: F401
    DEALER_ADMIN,
    PARTNER_MANAGER,
    REGIONAL_DIRECTOR,
    VAN_DER_BERG,
    log_in,
    no_staff_mfa,
)


def test_dealer_dashboard(portal, page, shot):
    log_in(page, portal.url, DEALER_ADMIN)
    page.locator(".mainnav").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name=f"{VAN_DER_BERG}: dashboard")).to_be_visible()
    expect(page.locator("svg.chart").first).to_be_visible()
    expect(page.get_by_role("img", name="Protected pipeline by expected close month, next 12 months")).to_be_visible()
    expect(page.get_by_role("heading", name="Your figures against last year")).to_be_visible()
    shot(page, "dashboard")
    page.get_by_role("link", name="This year").click()
    expect(page.locator(".period-shown")).to_contain_text("1 Jan")
    page.get_by_role("link", name="The sales behind the revenue").click()
    expect(page.get_by_role("heading", name="The sales behind the revenue")).to_be_visible()
    expect(page.locator("table tbody tr").first).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename.startswith("sales-")


def test_partner_manager_dashboard(portal, page, shot, no_staff_mfa):  # noqa: F811
    log_in(page, portal.url, PARTNER_MANAGER)
    page.locator(".mainnav").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Your dealers")).to_be_visible()
    ranking = page.locator("#ranking table")
    expect(ranking.get_by_role("link", name=VAN_DER_BERG)).to_be_visible()
    ranking.get_by_role("link", name="Registrations").click()  # sort by registrations
    expect(page.locator("#ranking th[aria-sort]")).to_contain_text("Registrations")
    shot(page, "dashboard")
    row = page.locator("#ranking tbody tr", has=page.get_by_role("link", name=VAN_DER_BERG))
    row.locator("td").nth(3).get_by_role("link").click()  # its registrations in the period
    expect(page.get_by_role("heading", name="Registrations submitted in the period")).to_be_visible()
    expect(page.locator("table tbody tr").first).to_contain_text(VAN_DER_BERG)


def test_regional_director_dashboard(portal, page, shot, no_staff_mfa):  # noqa: F811
    log_in(page, portal.url, REGIONAL_DIRECTOR)
    page.locator(".mainnav").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Your region")).to_be_visible()
    expect(page.get_by_role("heading", name="Escalations waiting")).to_be_visible()
    expect(page.get_by_role("heading", name="Dealers by tier")).to_be_visible()
    chart = "Forecast by expected close month: weighted by decision stage, and unweighted"
    expect(page.get_by_role("img", name=chart)).to_be_visible()
    shot(page, "dashboard")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the figures per region (CSV)").click()
    assert download.value.suggested_filename.startswith("region-kpis-")
    page.get_by_role("link", name="Per product line, product (in units), region and dealer").click()
    expect(page.get_by_role("img", name=chart)).to_be_visible()
    shot(page, "forecast")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").first.click()
    assert download.value.suggested_filename.endswith(".csv")
