"""The programme's starting tiers (migration tiers/0002, and after a test database flush)."""

from decimal import Decimal

DEFAULT_TIERS = [
    # name, rank, base margin, extra on registered deals, co-marketing, dedicated PM, early access,
    # premium support, open-registration cap, minimum total, minimum certifications, distribution share
    ("Gold", 1, "15", "7", "25000", True, True, True, 100, "75", 2, "20"),
    ("Silver", 2, "12", "6", "10000", False, True, False, 50, "50", None, "30"),
    ("Bronze", 3, "10", "5", "0", False, False, False, 25, "0", None, "50"),
]


def create_default_tiers(Tier, TierProgramme) -> None:
    if not Tier.objects.exists():
        for name, rank, base, extra, budget, dedicated, early, premium, cap, total, certs, share in DEFAULT_TIERS:
            Tier.objects.create(
                name=name,
                rank=rank,
                base_margin_percent=Decimal(base),
                registered_extra_margin_percent=Decimal(extra),
                co_marketing_budget=Decimal(budget),
                dedicated_partner_manager=dedicated,
                early_access=early,
                premium_support=premium,
                open_registration_cap=cap,
                min_total=Decimal(total),
                min_certifications=certs,
                distribution_share=Decimal(share),
            )
    TierProgramme.objects.get_or_create(pk=1)


def on_post_migrate(sender, apps=None, **kwargs) -> None:
    from django.apps import apps as global_apps

    apps = apps or global_apps  # a flush sends post_migrate without the migration state
    create_default_tiers(apps.get_model("tiers", "Tier"), apps.get_model("tiers", "TierProgramme"))
