"""The portal's whole story in one journey, for a newcomer to read (and its screenshots, in
test-results/screenshots/test_the_whole_story--*.png, are the ones in the README):

1. Daan of Van der Berg registers a deal for a dental practice.
2. Jan of Smit Elektro registers the same practice, spelt differently, and is told only that his
   registration needs a further review.
3. Femke, Smit Elektro's partner manager, sees both registrations side by side and escalates.
4. Marieke, the regional director, awards it to Smit Elektro in the admin: the customer chose.
5. Both dealers see the outcome; Van der Berg never learns who won.
6. Jan asks for more time and Femke extends the protection.
7. The vendor's ERP sale for the deal is imported, the nightly tier job runs, and Smit Elektro's
   tier page shows the sale behind its revenue.
"""

import io
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from deals.models import Registration
from tests.browser.test_conflict_journey import SECOND_DEALER, SECOND_PM, register
from tests.browser.test_journeys import DEALER_USER, REGIONAL_DIRECTOR, log_in, no_staff_mfa  # noqa: F401
from tiers import services as tier_services

CUSTOMER = "Tandartspraktijk Oudwijk B.V."


def test_the_whole_story(portal, new_page, shot, no_staff_mfa, tmp_path):  # noqa: F811
    # 1. the first dealer registers
    van_der_berg = new_page(suffix="-van-der-berg")
    log_in(van_der_berg, portal.url, DEALER_USER)
    first = register(van_der_berg, portal.url, CUSTOMER, "3581 KM")
    shot(van_der_berg, "1-registered")

    # 2. a second dealer registers the same customer in another spelling
    smit = new_page(suffix="-smit")
    log_in(smit, portal.url, SECOND_DEALER)
    second = register(smit, portal.url, "tandartspraktijk oudwijk", "3581KM")
    expect(smit.get_by_text("needs a further review because of a possible overlap")).to_be_visible()
    expect(smit.get_by_text("Van der Berg")).to_have_count(0)
    shot(smit, "2-told-only-that-review-is-needed")

    # 3. the partner manager sees both side by side and escalates
    femke = new_page(suffix="-partner-manager")
    log_in(femke, portal.url, SECOND_PM)
    femke.goto(f"{portal.url}/registrations/{second.pk}/")
    side = femke.locator("table.side-by-side").first
    expect(side.get_by_text(first.reference)).to_be_visible()
    femke.get_by_label("Internal note (required to escalate)").first.fill("The practice wants Smit Elektro.")
    shot(femke, "3-side-by-side")
    femke.get_by_role("button", name="Escalate to the regional director").first.click()
    expect(femke.get_by_text(f"{second.reference} is escalated to the regional director")).to_be_visible()

    # 4. the regional director awards it in the admin
    marieke = new_page(suffix="-regional-director")
    log_in(marieke, portal.url, REGIONAL_DIRECTOR)
    marieke.goto(f"{portal.url}/admin/deals/conflict/")
    marieke.get_by_role("link", name=second.reference).first.click()
    marieke.locator(f"input[name=winner][value='{second.pk}']").check()
    marieke.get_by_label("The customer chose this dealer").check()
    marieke.locator("textarea[name=note]").fill("Written choice of the practice, 12 November.")
    shot(marieke, "4-the-directors-decision")
    marieke.get_by_role("button", name="Record the decision").click()
    expect(marieke.locator(".messagelist")).to_contain_text(second.reference)

    # 5. both dealers see the outcome; the loser without the winner's name
    van_der_berg.goto(f"{portal.url}/registrations/{first.pk}/")
    expect(van_der_berg.get_by_text("cannot be protected for you")).to_be_visible()
    expect(van_der_berg.get_by_text("Smit Elektro")).to_have_count(0)
    shot(van_der_berg, "5-the-loser-sees-a-neutral-outcome")
    smit.goto(f"{portal.url}/registrations/{second.pk}/")
    expect(smit.get_by_text("Protected until")).to_be_visible()

    # 6. the winner asks for more time; its partner manager extends the protection
    until = Registration.objects.get(pk=second.pk).protected_until
    smit.get_by_text("Request an extension").click()
    smit.get_by_label("Why do you need more time?").fill("The practice's board meets in March.")
    smit.get_by_role("button", name="Request extension").click()
    femke.goto(f"{portal.url}/registrations/{second.pk}/")
    femke.get_by_role("button", name="Approve extension").click()
    extended = Registration.objects.get(pk=second.pk).protected_until
    assert extended > until
    smit.goto(f"{portal.url}/registrations/{second.pk}/")
    expect(smit.get_by_text("Extended 1×")).to_be_visible()
    shot(smit, "6-protection-extended")

    # 7. the vendor's sale arrives from its ERP; the nightly job evaluates the dealers
    sold_on = timezone.localdate() - timedelta(days=1)
    erp_file = tmp_path / "erp.csv"
    erp_file.write_text(
        "erp_line_id,date,reseller,customer_name,customer_city,customer_country,product_line,amount,"
        "registration_reference\n"
        f"ERP-STORY-1,{sold_on.isoformat()},Smit Elektro,Tandartspraktijk Oudwijk,Utrecht,NL,heat-pumps,"
        f"7450.00,{second.reference}\n",
        encoding="utf-8",
    )
    call_command("import_sales", str(erp_file), stdout=io.StringIO())
    tier_services.tiers_recompute(day=timezone.localdate())
    smit.locator(".mainnav").get_by_role("link", name="My tier").click()
    sales = smit.locator("#sales")
    expect(sales.get_by_role("cell", name="Tandartspraktijk Oudwijk")).to_be_visible()
    expect(sales.get_by_role("cell", name="€7,450.00")).to_be_visible()
    expect(sales.get_by_role("cell", name="Yes").first).to_be_visible()  # registered before the sale
    shot(smit, "7-the-tier-page-after-the-nightly-job")
