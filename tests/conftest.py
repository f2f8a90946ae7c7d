"""Personas shared by the whole suite: own dealer, other dealer, vendor staff."""

from types import SimpleNamespace

import pytest
from allauth.mfa.models import Authenticator
from django.core.cache import cache
from django.test import Client

from tests import factories, hypothesis_profiles  # noqa: F401  (registers and loads the profiles)


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()


def with_totp(user):
    """Give a staff user a TOTP authenticator, as MFA is required for vendor staff."""
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"})
    return user


@pytest.fixture
def world(db):
    """Two regions, their directors, two partner managers, a channel admin and three dealers."""
    rd_north = with_totp(factories.regional_director(email="rd.north@vendor.example"))
    rd_south = with_totp(factories.regional_director(email="rd.south@vendor.example"))
    north = factories.RegionFactory(name="North", code="north", regional_director=rd_north)
    south = factories.RegionFactory(name="South", code="south", regional_director=rd_south)
    pm_a = with_totp(factories.partner_manager(email="pm.a@vendor.example", home_region=north))
    pm_b = with_totp(factories.partner_manager(email="pm.b@vendor.example", home_region=south))
    admin = with_totp(factories.channel_admin(email="channel.admin@vendor.example"))
    own = factories.OrganisationFactory(name="Own Dealer B.V.", region=north, partner_manager=pm_a)
    other = factories.OrganisationFactory(name="Other Dealer B.V.", region=south, partner_manager=pm_b)
    orphan = factories.OrganisationFactory(name="Orphan Dealer B.V.", region=north, partner_manager=None)
    return SimpleNamespace(
        north=north,
        south=south,
        rd_north=rd_north,
        rd_south=rd_south,
        pm_a=pm_a,
        pm_b=pm_b,
        channel_admin=admin,
        own=own,
        other=other,
        orphan=orphan,
        own_admin=factories.dealer_admin(own, user__email="admin@own.example"),
        own_user=factories.dealer_user(own, user__email="user@own.example"),
        other_admin=factories.dealer_admin(other, user__email="admin@other.example"),
    )


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(params=["live", "rollup"])
def counted_both_ways(request, monkeypatch):
    """Run the test twice: figures counted live, and from a roll-up built just before each count
    (tiers.rollup), which must give the same figures."""
    if request.param == "rollup":
        from tiers import rollup

        def built_first(real):
            def count(*args, **kwargs):
                rollup.rollup_build()
                return real(*args, **kwargs)

            return count

        for module in ("tiers.kpis", "tiers.dashboards"):
            monkeypatch.setattr(f"{module}.registration_figures", built_first(rollup.registration_figures))
        monkeypatch.setattr("tiers.flags.submitted_by_dealer", built_first(rollup.submitted_by_dealer))
        monkeypatch.setattr("tiers.dashboards.review_hours_medians", built_first(rollup.review_hours_medians))
        monkeypatch.setattr("tiers.dashboards.forecast_totals", built_first(rollup.forecast_totals))
        monkeypatch.setattr("tiers.kpis.pipeline_figures", built_first(rollup.pipeline_figures))
        monkeypatch.setattr("tiers.kpis.sales_figures", built_first(rollup.sales_figures))
    return request.param
