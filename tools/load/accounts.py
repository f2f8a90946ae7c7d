#!/usr/bin/env python
"""Pick the accounts for the load test from the database; write them to a JSON file for locust.

    .venv/bin/python tools/load/accounts.py --dealers 35 --partner-managers 15 --password ... --out FILE

Run by tools/load_test.py with the same environment as the portal under test (so that it reads the
same database and the same cache). It reads only; it writes nothing to the database.

- Dealers: one active dealer user (active membership, verified e-mail, no failed log-in within the lock-out's cool-off)
  per reseller organisation that is not terminated, in an order shuffled by --seed, preferring
  organisations with room under their tier's cap on open registrations.
- Partner managers: active vendor staff in the partner manager group with an allauth TOTP
  authenticator, a verified e-mail and no recent failed log-in, those with the most submitted
  registrations waiting first. The TOTP secret is read from the authenticator as allauth reads it
  (allauth.mfa.utils.decrypt of data["secret"]).
- For every account, what it has already used of the hourly limits in the current clock hour
  (prm.ratelimit's counters in the cache), so that locust stays within PRM_REGISTRATION_SUBMITS_PER_HOUR
  and PRM_LOOKUPS_PER_HOUR without changing them.

The password (--password) is checked against the first account of each kind before anything runs:
a wrong one would only produce failed log-ins.

Fewer partner managers than asked for: dealer users take their places (with a note). Exit status 3
when there are fewer suitable accounts than asked for in all (with the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")


def client_ip(user_id: int) -> str:
    """A stable private address per account, sent as X-Forwarded-For (one person, one address)."""
    return f"10.{(user_id >> 16) & 255}.{(user_id >> 8) & 255}.{user_id & 255}"


def select(*, dealers: int, partner_managers: int, password: str, seed: int) -> dict:
    from allauth.account.models import EmailAddress
    from allauth.mfa import app_settings as mfa_settings
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, hotp_value
    from allauth.mfa.utils import decrypt
    from axes.models import AccessAttempt
    from django.conf import settings
    from django.core.cache import cache
    from django.db.models import Count
    from django.utils import timezone

    from dealers.models import Membership, Organisation, StaffRole, User
    from deals import services
    from deals.models import Registration

    window = int(time.time()) // 3600
    notes: list[str] = []
    verified = EmailAddress.objects.filter(verified=True).values("user_id")
    # failed log-ins within the lock-out's cool-off (older ones no longer count)
    recent = AccessAttempt.objects.filter(attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME)
    failed = {u.lower() for u in recent.values_list("username", flat=True) if u}

    def used(scope: str, user_id: int) -> int:
        try:
            return int(cache.get(f"ratelimit:{scope}:{user_id}:{window}") or 0)
        except Exception:  # a cache that does not answer: the portal lets requests through too
            return 0

    # --- partner managers with a TOTP authenticator ---
    totp = {
        a.user_id: a
        for a in Authenticator.objects.filter(
            type=Authenticator.Type.TOTP,
            user__is_active=True,
            user__is_staff=True,
            user__groups__name=StaffRole.PARTNER_MANAGER,
            user__in=verified,
        )
    }
    staff = [u for u in User.objects.filter(pk__in=list(totp)).order_by("pk") if u.email.lower() not in failed]
    waiting = dict(
        Registration.objects.filter(status=Registration.Status.SUBMITTED, organisation__partner_manager__in=staff)
        .values_list("organisation__partner_manager")
        .annotate(n=Count("pk"))
        .values_list("organisation__partner_manager", "n")
    )
    staff.sort(key=lambda u: (-waiting.get(u.pk, 0), u.pk))
    pms = [
        {
            "email": u.email,
            "password": password,
            "user_id": u.pk,
            "totp_secret": decrypt(totp[u.pk].data["secret"]),
            "submitted_waiting": waiting.get(u.pk, 0),
            "lookups_used": used("lookup", u.pk),
            "client_ip": client_ip(u.pk),
        }
        for u in staff[:partner_managers]
    ]

    if len(pms) < partner_managers:
        notes.append(
            f"only {len(pms)} partner managers with TOTP can log in: {partner_managers - len(pms)} more dealer users "
            "take their places"
        )
        dealers += partner_managers - len(pms)

    # --- dealers: one person per reseller organisation ---
    memberships = (
        Membership.objects.filter(
            deactivated_at__isnull=True,
            user__is_active=True,
            user__is_staff=False,
            user__in=verified,
            organisation__kind=Organisation.Kind.RESELLER,
        )
        .exclude(organisation__status=Organisation.Status.TERMINATED)
        .order_by("organisation_id", "user_id")
        .values_list("organisation_id", "user_id", "user__email")
    )
    by_organisation: dict[int, tuple[int, str]] = {}
    for organisation_id, user_id, email in memberships.iterator(chunk_size=5000):
        if email.lower() not in failed:
            by_organisation.setdefault(organisation_id, (user_id, email))
    organisation_ids = sorted(by_organisation)
    random.Random(seed).shuffle(organisation_ids)

    chosen, full = [], []
    organisations = Organisation.objects.in_bulk(organisation_ids[: max(dealers * 4, 200)])
    for checked, organisation_id in enumerate(organisation_ids):
        if len(chosen) >= dealers or checked >= max(20 * dealers, 2000):
            break
        organisation = organisations.get(organisation_id) or Organisation.objects.get(pk=organisation_id)
        headroom = services.open_registration_cap(organisation) - services.open_registration_count(organisation)
        user_id, email = by_organisation[organisation_id]
        entry = {
            "email": email,
            "password": password,
            "user_id": user_id,
            "organisation_id": organisation_id,
            "open_headroom": max(headroom, 0),
            "submits_used": used("registration-submit", user_id),
            "client_ip": client_ip(user_id),
        }
        (chosen if headroom > 0 else full).append(entry)
    if len(chosen) < dealers and full:
        notes.append(
            f"{min(len(full), dealers - len(chosen))} dealer(s) are at their open-registration cap: they browse "
            "but do not submit"
        )
        chosen += full[: dealers - len(chosen)]

    # --- a code an authenticator app showed in this period and the portal saw used (a run just before
    # this one) is refused: locust then waits for the next code, as a person would ---
    period = mfa_settings.TOTP_PERIOD
    counter = int(time.time()) // period
    for pm in pms:
        pm["totp_used_counter"] = -1
        try:
            code = format_hotp_value(hotp_value(pm["totp_secret"], counter))
            if cache.get(TOTP(totp[pm["user_id"]])._get_used_cache_key(code)):
                pm["totp_used_counter"] = counter
        except Exception:  # allauth's internals moved: the run may meet a refused code, and say so
            pass

    # --- the password, once per kind ---
    for kind, accounts in (("dealer", chosen), ("partner manager", pms)):
        if accounts and not User.objects.get(pk=accounts[0]["user_id"]).check_password(password):
            raise SystemExit(f"the password given does not match the {kind} {accounts[0]['email']}: check --password")

    return {
        "window": window,
        "seed": seed,
        "limits": {
            "submits_per_hour": settings.PRM_REGISTRATION_SUBMITS_PER_HOUR,
            "lookups_per_hour": settings.PRM_LOOKUPS_PER_HOUR,
            "login_failure_limit": settings.AXES_FAILURE_LIMIT,
        },
        "totp": {"period": mfa_settings.TOTP_PERIOD, "digits": mfa_settings.TOTP_DIGITS},
        "available": {"dealers": len(by_organisation), "partner_managers": len(staff)},
        "dealers": chosen,
        "partner_managers": pms,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dealers", type=int, required=True)
    parser.add_argument("--partner-managers", type=int, required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    result = select(
        dealers=args.dealers, partner_managers=args.partner_managers, password=args.password, seed=args.seed
    )
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    short = len(result["dealers"]) + len(result["partner_managers"]) < args.dealers + args.partner_managers
    print(
        f"accounts: {len(result['dealers'])} dealer users (of {result['available']['dealers']} dealers with one), "
        f"{len(result['partner_managers'])} partner managers with TOTP (of {result['available']['partner_managers']})"
    )
    for note in result["notes"]:
        print("note:", note)
    return 3 if short else 0


if __name__ == "__main__":
    sys.exit(main())
