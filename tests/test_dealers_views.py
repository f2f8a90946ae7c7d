"""The dealers pages through the client, as each persona: own dealer, other dealer, vendor staff."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from dealers import services
from dealers.models import Invitation, Membership, Organisation
from tests import factories
from tests.conftest import client_for

User = get_user_model()


# --- home ------------------------------------------------------------------------------------------


def test_home_per_role(world):
    page = client_for(world.own_admin).get("/").content.decode()
    assert "Own Dealer B.V." in page and "Invite a colleague" in page
    page = client_for(world.own_user).get("/").content.decode()
    assert "Own Dealer B.V." in page and "Invite a colleague" not in page
    assert "pm.a@vendor.example" in page  # their contact at the vendor
    page = client_for(world.pm_a).get("/").content.decode()
    assert "Your dealers" in page and "partner manager" in page
    page = client_for(world.rd_north).get("/").content.decode()
    assert "Without a partner manager" in page and "Orphan Dealer B.V." in page
    page = client_for(world.channel_admin).get("/").content.decode()
    assert "All dealers" in page and reverse("dealers:reassign_partner_manager") in page


def test_home_for_person_without_organisation(db):
    page = client_for(factories.UserFactory()).get("/").content.decode()
    assert "not linked to an organisation" in page


def test_orphan_dealer_sees_regional_director_as_contact(world):
    user = factories.dealer_user(world.orphan)
    assert "rd.north@vendor.example" in client_for(user).get("/").content.decode()


# --- my organisation ---------------------------------------------------------------------------------


def test_my_organisation_shows_own_colleagues_only(world):
    page = client_for(world.own_user).get(reverse("dealers:my_organisation")).content.decode()
    assert "admin@own.example" in page and "user@own.example" in page
    assert "admin@other.example" not in page and "Other Dealer" not in page
    assert "Invite a colleague" not in page  # dealer users don't manage people


def test_my_organisation_is_not_for_staff(world):
    assert client_for(world.pm_a).get(reverse("dealers:my_organisation")).status_code == 404


# --- invite ------------------------------------------------------------------------------------------


def test_dealer_admin_invites_through_the_page(world, django_capture_on_commit_callbacks):
    url = reverse("dealers:organisation_invite", args=[world.own.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.own_admin).post(url, {"email": "colleague@own.example", "role": "user"})
    assert response.status_code == 302 and response["Location"] == reverse("dealers:my_organisation")
    assert Invitation.objects.get().email == "colleague@own.example"
    assert mail.outbox[0].to == ["colleague@own.example"]


def test_invite_error_keeps_what_was_typed(world):
    url = reverse("dealers:organisation_invite", args=[world.own.pk])
    response = client_for(world.own_admin).post(url, {"email": "user@own.example", "role": "admin"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "already has an account" in page
    assert 'value="user@own.example"' in page
    assert '<option value="admin" selected>' in page


def test_invite_other_dealers_organisation_is_404(world):
    url = reverse("dealers:organisation_invite", args=[world.own.pk])
    assert client_for(world.other_admin).post(url, {"email": "x@y.example", "role": "user"}).status_code == 404
    assert client_for(world.pm_b).post(url, {"email": "x@y.example", "role": "user"}).status_code == 404
    assert not Invitation.objects.exists()


def test_dealer_user_may_not_invite(world):
    url = reverse("dealers:organisation_invite", args=[world.own.pk])
    assert client_for(world.own_user).post(url, {"email": "x@y.example", "role": "user"}).status_code == 403


def test_partner_manager_invites_first_admin_from_dealer_detail(world):
    new_dealer = factories.OrganisationFactory(region=world.north, partner_manager=world.pm_a)
    url = reverse("dealers:organisation_invite", args=[new_dealer.pk])
    response = client_for(world.pm_a).post(url, {"email": "boss@new.example", "role": "admin"})
    assert response["Location"] == reverse("dealers:dealer_detail", args=[new_dealer.pk])
    assert Invitation.objects.get().role == Membership.Role.DEALER_ADMIN


# --- deactivate --------------------------------------------------------------------------------------


def test_deactivate_asks_for_confirmation_then_deactivates(world):
    membership = Membership.objects.get(user=world.own_user)
    url = reverse("dealers:membership_deactivate", args=[membership.pk])
    client = client_for(world.own_admin)
    page = client.get(url)
    assert page.status_code == 200 and b"Nothing they did is deleted" in page.content
    assert Membership.objects.get(pk=membership.pk).is_active
    assert client.post(url).status_code == 302
    assert not User.objects.get(pk=world.own_user.pk).is_active


def test_deactivated_person_cannot_log_in(world, client):
    services.membership_deactivate(membership=Membership.objects.get(user=world.own_user), actor=world.own_admin)
    client.post(reverse("account_login"), {"login": "user@own.example", "password": factories.PASSWORD})
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302


def test_active_person_logs_in_by_email(world, client):
    response = client.post(reverse("account_login"), {"login": "USER@own.example", "password": factories.PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("persona", ["other_admin", "pm_b", "rd_south"])
def test_deactivate_someone_elses_colleague_is_404(world, persona):
    membership = Membership.objects.get(user=world.own_user)
    url = reverse("dealers:membership_deactivate", args=[membership.pk])
    client = client_for(getattr(world, persona))
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    assert User.objects.get(pk=world.own_user.pk).is_active


def test_reactivate_is_post_only_and_scoped(world):
    membership = Membership.objects.get(user=world.own_user)
    services.membership_deactivate(membership=membership, actor=world.own_admin)
    url = reverse("dealers:membership_reactivate", args=[membership.pk])
    assert client_for(world.own_admin).get(url).status_code == 405
    assert client_for(world.other_admin).post(url).status_code == 404
    assert client_for(world.own_admin).post(url).status_code == 302
    assert User.objects.get(pk=world.own_user.pk).is_active


# --- invitation acceptance -------------------------------------------------------------------------


@pytest.fixture
def invitation(world):
    return services.invitation_create(
        organisation=world.own, email="newbie@own.example", role="user", invited_by=world.own_admin, send=False
    )


def accept_url(invitation):
    return reverse("dealers:invitation_accept", args=[services.invitation_token(invitation)])


def test_accept_invitation_creates_account_and_logs_in(client, invitation):
    page = client.get(accept_url(invitation))
    assert page.status_code == 200 and b"Join Own Dealer B.V." in page.content
    response = client.post(
        accept_url(invitation),
        {
            "first_name": "Nina",
            "last_name": "Smit",
            "password1": "a-long-secret-phrase",
            "password2": "a-long-secret-phrase",
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("home")
    home = client.get("/").content.decode()
    assert "Welcome, Nina" in home and "Own Dealer B.V." in home


def test_accept_with_bad_password_keeps_names(client, invitation):
    response = client.post(
        accept_url(invitation), {"first_name": "Nina", "last_name": "Smit", "password1": "short", "password2": "short"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert 'value="Nina"' in page and 'value="Smit"' in page and "too short" in page
    assert not User.objects.filter(email="newbie@own.example").exists()


def test_reused_invitation_says_so(client, invitation):
    data = {
        "first_name": "N",
        "last_name": "S",
        "password1": "a-long-secret-phrase",
        "password2": "a-long-secret-phrase",
    }
    client.post(accept_url(invitation), data)
    client.logout()
    response = client.get(accept_url(invitation))
    assert response.status_code == 410 and b"already been used" in response.content


def test_expired_invitation_says_so(client, invitation):
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        response = client.get(accept_url(invitation))
    assert response.status_code == 410 and b"expired" in response.content


def test_garbled_invitation_link(client, db):
    response = client.get(reverse("dealers:invitation_accept", args=["not-a-token"]))
    assert response.status_code == 410 and b"not valid" in response.content


def test_logged_in_person_is_told_to_log_out_first(world, invitation):
    response = client_for(world.other_admin).get(accept_url(invitation))
    assert response.status_code == 409 and b"Log out first" in response.content


def test_open_signup_is_closed(client, db):
    response = client.get(reverse("account_signup"))
    assert b"closed" in response.content.lower()
    client.post(
        reverse("account_signup"),
        {"email": "intruder@x.example", "password1": "a-long-pw-1234", "password2": "a-long-pw-1234"},
    )
    assert not User.objects.filter(email="intruder@x.example").exists()


# --- dealer list and detail (vendor staff) -------------------------------------------------------


@pytest.mark.parametrize("url_name", ["dealers:dealer_list", "dealers:reassign_partner_manager"])
def test_staff_pages_are_404_for_dealers(world, url_name):
    assert client_for(world.own_admin).get(reverse(url_name)).status_code == 404


def test_dealer_list_is_scoped_and_filtered(world):
    page = client_for(world.pm_a).get(reverse("dealers:dealer_list")).content.decode()
    assert "Own Dealer B.V." in page and "Other Dealer" not in page and "Orphan" not in page
    admin = client_for(world.channel_admin)
    page = admin.get(reverse("dealers:dealer_list"), {"q": "orphan"}).content.decode()
    assert "Orphan Dealer B.V." in page and "Own Dealer" not in page
    page = admin.get(reverse("dealers:dealer_list"), {"region": world.south.pk}).content.decode()
    assert "Other Dealer B.V." in page and "Own Dealer" not in page
    page = admin.get(reverse("dealers:dealer_list"), {"partner_manager": "null"}).content.decode()
    assert "Orphan Dealer B.V." in page and "Own Dealer" not in page
    page = admin.get(reverse("dealers:dealer_list"), {"status": "terminated"}).content.decode()
    assert "No dealers match these filters" in page


def test_dealer_list_paginates(world):
    factories.OrganisationFactory.create_batch(30, region=world.north, partner_manager=world.pm_a)
    client = client_for(world.pm_a)
    first = client.get(reverse("dealers:dealer_list"))
    assert len(first.context["page"].object_list) == 25
    assert "Page 1 of 2" in first.content.decode()
    second = client.get(reverse("dealers:dealer_list"), {"page": 2})
    assert len(second.context["page"].object_list) == 6


def test_dealer_list_query_count_does_not_grow_with_rows(world, django_assert_max_num_queries):
    factories.OrganisationFactory.create_batch(20, region=world.north, partner_manager=world.pm_a)
    client = client_for(world.pm_a)
    client.get(reverse("dealers:dealer_list"))  # warm the session
    with django_assert_max_num_queries(12):
        client.get(reverse("dealers:dealer_list"))


def test_dealer_detail_scoping(world):
    url = reverse("dealers:dealer_detail", args=[world.own.pk])
    assert client_for(world.pm_a).get(url).status_code == 200
    assert client_for(world.rd_north).get(url).status_code == 200
    assert client_for(world.channel_admin).get(url).status_code == 200
    assert client_for(world.pm_b).get(url).status_code == 404
    assert client_for(world.rd_south).get(url).status_code == 404
    assert client_for(world.own_admin).get(url).status_code == 404
    assert client_for(world.other_admin).get(url).status_code == 404
    assert client_for(world.pm_a).get(reverse("dealers:dealer_detail", args=[99999])).status_code == 404


def test_dealer_detail_shows_people_and_history(world):
    services.organisation_set_status(organisation=world.own, status="improvement_plan", actor=world.pm_a)
    page = client_for(world.pm_a).get(reverse("dealers:dealer_detail", args=[world.own.pk])).content.decode()
    assert "admin@own.example" in page and "Improvement plan" in page


# --- reassign ------------------------------------------------------------------------------------


def test_reassign_confirms_then_moves(world):
    url = reverse("dealers:reassign_partner_manager")
    client = client_for(world.channel_admin)
    assert client.get(url).status_code == 200
    confirm = client.post(url, {"from_user": world.pm_a.pk, "to_user": world.pm_b.pk})
    assert confirm.status_code == 200 and b"Own Dealer B.V." in confirm.content
    assert Organisation.objects.get(pk=world.own.pk).partner_manager == world.pm_a
    done = client.post(url, {"from_user": world.pm_a.pk, "to_user": world.pm_b.pk, "confirm": "yes"})
    assert done.status_code == 302
    assert Organisation.objects.get(pk=world.own.pk).partner_manager == world.pm_b


def test_reassign_is_for_channel_admins_only(world):
    assert client_for(world.rd_north).get(reverse("dealers:reassign_partner_manager")).status_code == 404


# --- MFA for vendor staff, in the portal and in the admin --------------------------------------------


@override_settings(PRM_REQUIRE_STAFF_MFA=True)
@pytest.mark.parametrize("path", ["/", "/dealers/", "/admin/", "/admin/dealers/organisation/"])
def test_staff_without_mfa_are_sent_to_set_it_up(db, path):
    staff = factories.partner_manager()
    response = client_for(staff).get(path)
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_activate_totp")


@override_settings(PRM_REQUIRE_STAFF_MFA=True)
def test_staff_without_mfa_can_still_reach_set_up_and_log_out(db):
    client = client_for(factories.partner_manager())
    response = client.get(reverse("mfa_activate_totp"))
    # allauth may first ask to confirm the password (force_login has no recent authentication)
    assert response.status_code == 200 or response["Location"].startswith("/accounts/reauthenticate/")
    assert client.get("/accounts/reauthenticate/").status_code == 200
    assert client.post(reverse("account_logout")).status_code == 302


@override_settings(PRM_REQUIRE_STAFF_MFA=True)
def test_staff_with_mfa_and_dealers_pass(world):
    assert client_for(world.pm_a).get("/").status_code == 200
    assert client_for(world.own_user).get("/").status_code == 200  # not required for dealers


@override_settings(PRM_REQUIRE_STAFF_MFA=False)
def test_requirement_can_be_switched_off(db):
    assert client_for(factories.partner_manager()).get("/").status_code == 200


def test_staff_with_totp_must_enter_a_code_at_login(world, client):
    response = client.post(reverse("account_login"), {"login": world.pm_a.email, "password": factories.PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("mfa_authenticate")
    assert client.get("/").status_code == 302  # not logged in before the code


# --- admin ---------------------------------------------------------------------------------------


def test_admin_login_goes_through_allauth(client, db):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))
    response = client.get("/admin/")
    assert response.status_code == 302


def test_admin_refuses_dealers(world):
    assert client_for(world.own_admin).get("/admin/").status_code in (302, 403)
    assert client_for(world.own_admin).get("/admin/login/").status_code == 403


def test_admin_organisations_are_scoped_for_partner_managers(world):
    client = client_for(world.pm_a)
    page = client.get("/admin/dealers/organisation/").content.decode()
    assert "Own Dealer B.V." in page and "Other Dealer B.V." not in page
    other = client.get(f"/admin/dealers/organisation/{world.other.pk}/change/")
    assert other.status_code == 302  # the admin's answer for an object outside the queryset
    page = client_for(world.channel_admin).get("/admin/dealers/organisation/").content.decode()
    assert "Other Dealer B.V." in page and "Own Dealer B.V." in page


def test_admin_memberships_scoped(world):
    page = client_for(world.pm_b).get("/admin/dealers/membership/").content.decode()
    assert str(world.other_admin) in page and str(world.own_admin) not in page


def test_partner_manager_cannot_reassign_dealers_in_the_admin(world):
    client = client_for(world.pm_a)
    page = client.get(f"/admin/dealers/organisation/{world.own.pk}/change/").content.decode()
    assert 'name="partner_manager"' not in page and 'name="region"' not in page
    admin_page = client_for(world.channel_admin).get(f"/admin/dealers/organisation/{world.own.pk}/change/")
    assert b'name="partner_manager"' in admin_page.content
