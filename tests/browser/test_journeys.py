"""The first journeys, one per role, through the real browser: log in, land home, look around, log out."""

import re

import pytest
from django.core import mail
from django.test import override_settings
from playwright.sync_api import expect

from dealers.management.commands.seed_demo import DEMO_PASSWORD
from dealers.models import Organisation, User
from tests.browser.conftest import PHONE

CHANNEL_ADMIN = "sanne.bakker@vendor.example"
REGIONAL_DIRECTOR = "marieke.devries@vendor.example"
PARTNER_MANAGER = "jeroen.visser@vendor.example"
DEALER_ADMIN = "eva.vanderberg@vanderberg.example"
DEALER_USER = "daan.hendriks@vanderberg.example"
VAN_DER_BERG = "Van der Berg Installatietechniek B.V."


def log_in(page, base_url, email, password=DEMO_PASSWORD):
    page.goto(f"{base_url}/accounts/login/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_out(page, base_url):
    page.locator(".topbar").get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{base_url}/accounts/login/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)


def open_dealers(page, base_url, dealer_name):
    page.locator(".mainnav").get_by_role("link", name="Dealers").click()
    expect(page).to_have_url(f"{base_url}/dealers/")
    expect(page.get_by_role("heading", name="Dealers", exact=True)).to_be_visible()
    page.get_by_role("link", name=dealer_name).click()
    expect(page).to_have_url(re.compile(r"/dealers/\d+/$"))
    expect(page.get_by_role("heading", name=dealer_name)).to_be_visible()
    expect(page.get_by_role("heading", name="People")).to_be_visible()


@pytest.fixture
def no_staff_mfa():
    """Staff journeys below are about the portal, not about MFA (which has its own journey)."""
    with override_settings(PRM_REQUIRE_STAFF_MFA=False):
        yield


def test_channel_admin(portal, page, shot, no_staff_mfa):
    log_in(page, portal.url, CHANNEL_ADMIN)
    expect(page).to_have_url(f"{portal.url}/")
    expect(page.get_by_role("heading", name="Welcome, Sanne")).to_be_visible()
    expect(page.get_by_role("heading", name="All dealers")).to_be_visible()
    all_dealers = page.locator("section.card", has=page.get_by_role("heading", name="All dealers"))
    expect(all_dealers.locator(".stat")).to_have_text(str(Organisation.objects.count()))
    expect(page.get_by_role("link", name="Move a partner manager's dealers")).to_be_visible()
    expect(page.get_by_role("heading", name="Without a partner manager")).to_be_visible()
    shot(page, "home")
    open_dealers(page, portal.url, "Dubois Techniques SRL")
    shot(page, "dealer")
    log_out(page, portal.url)


def test_regional_director(portal, page, shot, no_staff_mfa):
    log_in(page, portal.url, REGIONAL_DIRECTOR)
    expect(page.get_by_role("heading", name="Welcome, Marieke")).to_be_visible()
    orphans = page.locator("section.card", has=page.get_by_role("heading", name="Without a partner manager"))
    expect(orphans).to_be_visible()
    # Her region's dealer without a partner manager, not the Belgian one.
    expect(orphans.get_by_role("link", name="Meijer Facility Solutions")).to_be_visible()
    expect(orphans.get_by_role("link", name="Dubois Techniques SRL")).to_have_count(0)
    expect(page.get_by_role("link", name="Move a partner manager's dealers")).to_have_count(0)
    shot(page, "home")
    open_dealers(page, portal.url, "Meijer Facility Solutions")
    log_out(page, portal.url)


def test_partner_manager(portal, page, shot, no_staff_mfa):
    jeroen = User.objects.get(email=PARTNER_MANAGER)
    log_in(page, portal.url, PARTNER_MANAGER)
    expect(page.get_by_role("heading", name="Welcome, Jeroen")).to_be_visible()
    yours = page.locator("section.card", has=page.get_by_role("heading", name="Your dealers"))
    expect(yours.locator(".stat")).to_have_text(str(Organisation.objects.filter(partner_manager=jeroen).count()))
    expect(yours.locator(".stat")).to_have_text("3")
    expect(page.get_by_role("heading", name="Without a partner manager")).to_have_count(0)
    shot(page, "home")
    page.locator(".mainnav").get_by_role("link", name="Dealers").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.get_by_role("link", name="De Groot Bouwsystemen B.V.")).to_have_count(0)  # Femke's dealer
    shot(page, "dealers")
    page.get_by_role("link", name=VAN_DER_BERG).click()
    expect(page.get_by_role("heading", name=VAN_DER_BERG)).to_be_visible()
    expect(page.get_by_text("Eva van der Berg")).to_be_visible()
    log_out(page, portal.url)


def test_dealer_admin(portal, page, shot):
    log_in(page, portal.url, DEALER_ADMIN)
    expect(page).to_have_url(f"{portal.url}/")
    expect(page.get_by_role("heading", name="Welcome, Eva")).to_be_visible()
    expect(page.locator("main").get_by_text(VAN_DER_BERG)).to_be_visible()
    expect(page.get_by_role("link", name="Invite a colleague")).to_be_visible()
    expect(page.locator(".mainnav").get_by_role("link", name="Dealers")).to_have_count(0)
    shot(page, "home")
    page.locator(".mainnav").get_by_role("link", name="My organisation").click()
    expect(page).to_have_url(f"{portal.url}/organisation/")
    expect(page.get_by_role("heading", name=VAN_DER_BERG)).to_be_visible()
    expect(page.get_by_role("heading", name="Invite a colleague")).to_be_visible()
    expect(page.get_by_text("Daan Hendriks")).to_be_visible()
    shot(page, "organisation")
    log_out(page, portal.url)


def test_dealer_user(portal, page, shot):
    log_in(page, portal.url, DEALER_USER)
    expect(page.get_by_role("heading", name="Welcome, Daan")).to_be_visible()
    expect(page.locator("main").get_by_text(VAN_DER_BERG)).to_be_visible()
    expect(page.get_by_role("link", name="Invite a colleague")).to_have_count(0)
    shot(page, "home")
    page.locator(".mainnav").get_by_role("link", name="My organisation").click()
    expect(page.get_by_role("heading", name=VAN_DER_BERG)).to_be_visible()
    expect(page.get_by_role("heading", name="Invite a colleague")).to_have_count(0)
    expect(page.get_by_role("button", name="Send invitation")).to_have_count(0)
    # Staff pages do not exist for a dealer.
    response = page.goto(f"{portal.url}/dealers/")
    assert response.status == 404
    page.goto(f"{portal.url}/organisation/")
    shot(page, "organisation")
    log_out(page, portal.url)


def test_wrong_password_stays_on_login(portal, page):
    log_in(page, portal.url, DEALER_USER, password="not-the-password")
    expect(page).to_have_url(f"{portal.url}/accounts/login/")
    expect(page.get_by_text("not correct")).to_be_visible()


def totp_code(secret: str) -> str:
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value, yield_hotp_counters_from_time

    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def test_staff_must_set_up_totp(portal, page, shot):
    with override_settings(PRM_REQUIRE_STAFF_MFA=True):
        log_in(page, portal.url, PARTNER_MANAGER)
        # allauth asks for the password once more before an authenticator may be added, even right
        # after logging in (only a "reauthenticated" record counts as recent).
        expect(page).to_have_url(f"{portal.url}/accounts/reauthenticate/?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F")
        expect(page.get_by_text("Vendor staff must use two-factor authentication")).to_be_visible()
        shot(page, "reauthenticate")
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        expect(page).to_have_url(f"{portal.url}/accounts/2fa/totp/activate/")
        expect(page.get_by_role("heading", name="Activate Authenticator App")).to_be_visible()
        shot(page, "activate")

        page.goto(f"{portal.url}/dealers/")
        expect(page).to_have_url(f"{portal.url}/accounts/2fa/totp/activate/")
        expect(page.get_by_text("Vendor staff must use two-factor authentication")).to_be_visible()
        page.goto(f"{portal.url}/organisation/")
        expect(page).to_have_url(f"{portal.url}/accounts/2fa/totp/activate/")

        secret = page.locator("#authenticator_secret").input_value()
        assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
        page.get_by_label("Authenticator code").fill(totp_code(secret))
        page.get_by_role("button", name="Activate").click()
        expect(page).not_to_have_url(f"{portal.url}/accounts/2fa/totp/activate/")
        shot(page, "activated")

        page.goto(f"{portal.url}/dealers/")
        expect(page).to_have_url(f"{portal.url}/dealers/")
        expect(page.locator("table tbody tr")).to_have_count(3)
        log_out(page, portal.url)

        # From now on the log-in asks for the code.
        log_in(page, portal.url, PARTNER_MANAGER)
        expect(page).to_have_url(f"{portal.url}/accounts/2fa/authenticate/")
        shot(page, "authenticate")


def test_dealer_admin_invites_a_colleague(portal, page, new_page, shot):
    log_in(page, portal.url, DEALER_ADMIN)
    page.get_by_role("link", name="Invite a colleague").click()
    expect(page).to_have_url(f"{portal.url}/organisation/#invite")
    page.get_by_label("Email address").fill("nina.kok@vanderberg.example")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("nina.kok@vanderberg.example").first).to_be_visible()
    shot(page, "invited")

    invitations = [m for m in mail.outbox if m.to == ["nina.kok@vanderberg.example"]]
    assert len(invitations) == 1, [(m.subject, m.to) for m in mail.outbox]
    email = invitations[0]
    link = re.search(r"https?://\S+/invitations/\S+/", email.body).group(0)
    assert link.startswith(portal.url)

    guest = new_page(suffix="--guest")
    guest.goto(link)
    expect(guest.get_by_role("heading", name=f"Join {VAN_DER_BERG}")).to_be_visible()
    shot(guest, "accept")
    guest.get_by_label("First name").fill("Nina")
    guest.get_by_label("Last name").fill("Kok")
    guest.get_by_label("Choose a password").fill("lampen-en-leidingen-42")
    guest.get_by_label("Repeat the password").fill("lampen-en-leidingen-42")
    guest.get_by_role("button", name="Create my account").click()
    expect(guest).to_have_url(f"{portal.url}/")
    expect(guest.get_by_role("heading", name="Welcome, Nina")).to_be_visible()
    expect(guest.locator("main").get_by_text(VAN_DER_BERG)).to_be_visible()
    expect(guest.get_by_role("link", name="Invite a colleague")).to_have_count(0)
    shot(guest, "welcome")

    again = new_page(suffix="--again")
    response = again.goto(link)
    assert response.status == 410
    expect(again.get_by_text("already been used")).to_be_visible()


@pytest.mark.parametrize("who", [DEALER_ADMIN, PARTNER_MANAGER], ids=["dealer_admin", "partner_manager"])
def test_phone_viewport(portal, new_page, shot, no_staff_mfa, who):
    phone = new_page(viewport=PHONE)
    phone.goto(f"{portal.url}/accounts/login/")
    shot(phone, "login")
    log_in(phone, portal.url, who)
    expect(phone.get_by_role("heading", name=re.compile("Welcome"))).to_be_visible()
    expect(phone.get_by_role("button", name="Log out")).to_be_visible()
    shot(phone, "home")
    if who == PARTNER_MANAGER:
        phone.goto(f"{portal.url}/dealers/")
        expect(phone.locator("table tbody tr")).to_have_count(3)
    else:
        phone.goto(f"{portal.url}/organisation/")
    # Nothing wider than the phone: no sideways scrolling of the whole page.
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
