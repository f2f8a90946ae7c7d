"""The protection lookup: before approaching a customer, vendor staff look it up — is it
protected, by which dealer, until when, and is it a named account?

One typed text is read every way it can be: as a customer name (normalised like the conflict
check), as a VAT or Chamber of Commerce number (normalised, with or without its country prefix)
and as a website domain (a URL or an e-mail address gives its domain). The customer records that
dealers keep separately are grouped into one result per customer identity (shared VAT, register
number, domain, or normalised name in one country); the named accounts are joined to the identity
deals.matching says they are.

Two searches, each through its own indexes:

- exact: the whole normalised name, a VAT or register number, or a website domain, over every
  customer record: a customer that nobody protects (any more) is shown too, as not protected;
- similar: a part of the normalised name, and on PostgreSQL a trigram-similar name that
  deals.matching confirms, among the customers of active registrations only (deals.models.OpenCustomer
  and its trigram index, as in the conflict check): the similar names of all 400,000 customers
  made the page's p95 252 ms at a million registrations. A near-miss spelling of a customer
  without an active registration is therefore not found; the page says so.

Only active registrations (submitted, info requested, approved, escalated) are shown: a
withdrawn, rejected, won, lost or expired registration protects nothing. The page shows dealer
names, so it is for vendor staff only; dealers never see it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from django.db import connection
from django.db.models import Case, Prefetch, Q, When
from django.utils import timezone
from django.utils.formats import date_format

from dealers.countries import COUNTRIES
from deals import matching
from deals.conflicts import TRIGRAM_THRESHOLD
from deals.models import Customer, NamedAccount, OpenCustomer, ProtectionLookup, Registration

Status = Registration.Status
ACTIVE = (Status.SUBMITTED, Status.INFO_REQUESTED, Status.APPROVED, Status.ESCALATED)
UNDER_REVIEW = {
    Status.SUBMITTED: "",
    Status.INFO_REQUESTED: " (more information requested)",
    Status.ESCALATED: " (escalated)",
}

RESULT_LIMIT = 50  # results shown on one page
CANDIDATE_LIMIT = 500  # customer records read per lookup; beyond that the query is too vague
MIN_QUERY_LENGTH = 2
# On the page beside the results of a name (see the module docstring: two searches).
SCOPE_NOTE = (
    "Similar names and parts of names are searched among open registrations; a customer without one is "
    "found by its exact name, VAT number, Chamber of Commerce number or website."
)

# Cross-country VAT prefixes: a number typed without one is tried with each (Greece's is EL).
VAT_PREFIXES = sorted({"EL" if code == "GR" else code for code in COUNTRIES})


@dataclass(frozen=True)
class Interpretation:
    """What one typed text can mean; an empty value means "not this way"."""

    name: str = ""
    vat_keys: frozenset[str] = frozenset()
    register_keys: frozenset[str] = frozenset()
    domain: str = ""
    generic_domain: bool = False  # an e-mail domain such as gmail.com, which names nobody


def interpret(query: str) -> Interpretation:
    text = query.strip()
    looks_like_address = "@" in text or "://" in text
    name = "" if looks_like_address else matching.name_key(text)[:200]

    vat_keys: set[str] = set()
    register_keys: set[str] = set()
    number = matching.normalize_vat(text)
    if not looks_like_address and len(number) >= 5 and any(c.isdigit() for c in number) and number.isalnum():
        if number[:2].isalpha():
            vat_keys.add(number)
            digits = matching.company_digits(number, "")
            if digits:
                register_keys.add(f"{number[:2]}:{digits}")
        else:
            vat_keys |= {prefix + number for prefix in VAT_PREFIXES}
            register_keys |= {f"{code}:{number}" for code in COUNTRIES}
            for code in ("BE", "FR"):  # where the VAT number holds the register number
                digits = matching.company_digits(number, code)
                if digits:
                    register_keys.add(f"{code}:{digits}")

    domain, generic = "", False
    if "." in text and not re.search(r"\s", text):
        domain = matching.normalize_domain(text)
        generic = not domain and "@" in text
    return Interpretation(
        name=name if len(name) >= MIN_QUERY_LENGTH else "",
        vat_keys=frozenset(k[:24] for k in vat_keys),
        register_keys=frozenset(k[:30] for k in register_keys),
        domain=domain[:200],
        generic_domain=generic,
    )


@dataclass
class LookupResult:
    """One customer identity: the records dealers keep of it, their active registrations (earliest
    first) and the named accounts that are this customer."""

    customers: list[Customer] = field(default_factory=list)
    registrations: list[Registration] = field(default_factory=list)
    named_accounts: list[NamedAccount] = field(default_factory=list)
    matched_on: set[str] = field(default_factory=set)
    exact: bool = False  # found by a number, a domain or the whole name, not a part of it

    @property
    def name(self) -> str:
        if self.customers:
            return self._main_customer.name
        return self.named_accounts[0].name

    @property
    def city(self) -> str:
        return self._main_customer.city if self.customers else self.named_accounts[0].city

    @property
    def country(self) -> str:
        main = self._main_customer if self.customers else self.named_accounts[0]
        return main.get_country_display()

    @property
    def _main_customer(self) -> Customer:
        """The record of the protecting dealer if any, else the one registered first."""
        for registration in self.registrations:
            if registration.status == Status.APPROVED:
                return registration.customer
        return self.registrations[0].customer if self.registrations else self.customers[0]

    @property
    def other_names(self) -> list[str]:
        return sorted({c.name for c in self.customers} - {self.name})

    @property
    def matched_on_text(self) -> str:
        return ", ".join(sorted(self.matched_on))

    @property
    def is_protected(self) -> bool:
        return any(r.status == Status.APPROVED for r in self.registrations)

    def answers(self, today: date | None = None) -> list[str]:
        """Plain sentences, the most important first."""
        today = today or timezone.localdate()
        lines = []
        for registration in sorted(self.registrations, key=_answer_order):
            dealer = registration.organisation.name
            if registration.status == Status.APPROVED:
                until = date_format(registration.protected_until, "j F Y")
                if registration.protected_until < today:
                    lines.append(f"Protection for {dealer} ended on {until} (to be expired tonight)")
                else:
                    lines.append(f"Protected for {dealer} until {until}")
            else:
                lines.append(f"Registration under review by {dealer}{UNDER_REVIEW[registration.status]}")
        for account in self.named_accounts:
            holder = account.reserved_for.name if account.reserved_for else "the direct team"
            lines.append(f"Named account: reserved for {holder}")
        if not self.registrations:
            lines.append("No active registration" if self.named_accounts else "Not protected: no active registration")
        return lines

    @property
    def answer(self) -> str:
        return self.answers()[0]

    @property
    def sort_key(self) -> tuple:
        return (not self.exact, matching.name_key(self.name), self.name)


def _answer_order(registration: Registration) -> tuple:
    return (registration.status != Status.APPROVED, registration.first_submitted_at, registration.pk)


def _exact_filter(found: Interpretation, *, by_index: bool = True) -> Q:
    """Customer records, with or without an active registration, that the query names exactly.
    by_index: the name through the (country, name_key) index, one descent per country (without a
    country PostgreSQL's only index for name_key alone is the trigram one, 30-70 ms for "=")."""
    condition = Q(pk__in=[])
    if found.name:
        condition |= Q(country__in=list(COUNTRIES), name_key=found.name) if by_index else Q(name_key=found.name)
    if found.vat_keys:
        condition |= Q(vat_key__in=found.vat_keys)
    if found.register_keys:
        condition |= Q(register_key__in=found.register_keys)
    if found.domain:
        condition |= Q(domain_key=found.domain)
    return condition


# set_config(..., true) holds to the end of the transaction. Outside one (autocommit), the two
# statements sent in one call are one implicit transaction (PostgreSQL's simple query protocol): the
# threshold holds for this SELECT only, without BEGIN and COMMIT round trips around it.
# Two SELECTs, not one WHERE … OR …: for a long name the planner costed the OR of the two index scans
# above a sequential scan, which computes the similarity of every open customer's name (120–160 ms
# at a million registrations instead of 5). A customer in both halves comes twice; the dict keeps one.
SIMILAR_SQL = """
SELECT set_config('pg_trgm.similarity_threshold', %(threshold)s, true);
SELECT customer_id, name_key FROM deals_opencustomer WHERE name_key LIKE %(part)s
UNION ALL
SELECT customer_id, name_key FROM deals_opencustomer WHERE name_key %% %(name)s
"""


def _similar_customer_ids(found: Interpretation) -> list[int]:
    """The customers of active registrations whose normalised name contains the typed one or may be
    the same name (at most CANDIDATE_LIMIT, by name). Only the name keys are read: a shared word
    ("& zonen", "installatiebedrijf") brings in hundreds of similar names, and
    matching.names_may_match leaves the few that deals.matching may accept.

    From deals.models.OpenCustomer, one narrow row per customer with an active registration (kept by
    deals.open_customers). On PostgreSQL through its trigram index (migration 0011), which serves
    both the LIKE (name_key is lower case already, so a case-sensitive LIKE) and the similarity. As
    in the conflict check, at its threshold: only names match() may accept (none below 0.4 in a
    5,500-pair sample); pg_trgm's default 0.3 reads several times more names, to answer none of
    them. Elsewhere (SQLite, a small data set) the trigram search is left out: every open
    customer's name key is compared here."""
    if connection.vendor == "postgresql":
        part = found.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with connection.cursor() as cursor:
            cursor.execute(
                SIMILAR_SQL,
                {"threshold": str(TRIGRAM_THRESHOLD), "part": f"%{part}%", "name": found.name},
            )
            keys = dict(cursor.fetchall())
    else:
        keys = dict(OpenCustomer.objects.values_list("customer_id", "name_key"))
    plausible = sorted(
        (key, customer_id)
        for customer_id, key in keys.items()
        if found.name in key or matching.names_may_match(found.name, key)
    )
    return [customer_id for _, customer_id in plausible[:CANDIDATE_LIMIT]]


def _how_found(customer: Customer, found: Interpretation, query: str) -> tuple[set[str], bool]:
    """Why this record answers the query ({} when a fuzzy candidate turns out not to), and whether
    it is an exact hit rather than a part of a name."""
    reasons: set[str] = set()
    if customer.vat_key and customer.vat_key in found.vat_keys:
        reasons.add("the VAT number")
    if customer.register_key and customer.register_key in found.register_keys:
        reasons.add("the Chamber of Commerce number")
    if found.domain and customer.domain_key == found.domain:
        reasons.add("the website domain")
    exact = bool(reasons)
    if found.name and customer.name_key:
        if customer.name_key == found.name:
            reasons.add("the name")
            exact = True
        elif found.name in customer.name_key:
            reasons.add("part of the name")
        elif (
            matching.names_may_match(found.name, customer.name_key)
            and matching.match(
                {"name": query, "country": customer.country}, customer.as_match_record()
            ).is_same_customer
        ):
            reasons.add("a similar name")
            exact = True
    return reasons, exact


def _named_account_hit(account: NamedAccount, found: Interpretation, query: str) -> tuple[set[str], bool]:
    reasons: set[str] = set()
    if account.vat_number and matching.normalize_vat(account.vat_number, account.country) in found.vat_keys:
        reasons.add("the VAT number")
    if found.domain and matching.normalize_domain(account.website) == found.domain:
        reasons.add("the website domain")
    exact = bool(reasons)
    if found.name:
        key = matching.name_key(account.name)
        if key == found.name:
            reasons.add("the name")
            exact = True
        elif found.name in key:
            reasons.add("part of the name")
        elif (
            matching.names_may_match(found.name, key)
            and matching.match({"name": query, "country": account.country}, account.as_match_record()).is_same_customer
        ):
            reasons.add("a similar name")
            exact = True
    return reasons, exact


def _identity_keys(customer: Customer) -> list[tuple]:
    keys: list[tuple] = [("name", customer.country, customer.name_key or f"#{customer.pk}")]
    for name in ("vat_key", "register_key", "domain_key"):
        value = getattr(customer, name)
        if value:
            keys.append((name, value))
    return keys


def _group_by_identity(customers: list[Customer]) -> list[list[Customer]]:
    """Records that share any matching key are one customer (union-find over the keys)."""
    parent: dict[tuple, tuple] = {}

    def root(key: tuple) -> tuple:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for customer in customers:
        first, *rest = _identity_keys(customer)
        for key in rest:
            parent[root(key)] = root(first)
        root(first)
    groups: dict[tuple, list[Customer]] = {}
    for customer in customers:
        groups.setdefault(root(_identity_keys(customer)[0]), []).append(customer)
    return list(groups.values())


# what the lookup and its page read of a named account (of the dealer it is reserved for: the name)
NAMED_ACCOUNT_FIELDS = ("name", "city", "country", "website", "vat_number", "company_number", "note", "reserved_for")


def protection_lookup(*, query: str, user) -> list[LookupResult]:
    """Every customer identity and named account the query finds, exact hits first, then by name.

    Four queries whatever the number of results: the similar names of active registrations, the
    customer records (with their active registrations and dealers, prefetched) and the active
    named accounts."""
    if not (user.is_authenticated and user.is_vendor_staff):
        return []
    found = interpret(query)
    exact = _exact_filter(found)
    active = (
        Registration.objects.filter(status__in=ACTIVE)
        .select_related("organisation")
        .order_by("first_submitted_at", "pk")
    )
    condition = exact | Q(pk__in=_similar_customer_ids(found)) if found.name else exact
    candidates = list(
        Customer.objects.filter(condition)
        # the exact hits first: the candidate limit cuts only parts of names and similar names
        .annotate(similar_only=Case(When(_exact_filter(found, by_index=False), then=False), default=True))
        .order_by("similar_only", "name_key", "pk")
        .prefetch_related(Prefetch("registrations", queryset=active, to_attr="active_registrations"))[:CANDIDATE_LIMIT]
    )

    hits: list[tuple[Customer, set[str], bool]] = []
    for customer in candidates:
        reasons, exact = _how_found(customer, found, query)
        if reasons:
            hits.append((customer, reasons, exact))
    how = {customer.pk: (reasons, exact) for customer, reasons, exact in hits}

    results: list[LookupResult] = []
    for group in _group_by_identity([customer for customer, _, _ in hits]):
        result = LookupResult(customers=group)
        for customer in group:
            reasons, exact = how[customer.pk]
            result.matched_on |= reasons
            result.exact |= exact
            result.registrations += customer.active_registrations
        result.registrations.sort(key=lambda r: (r.first_submitted_at, r.pk))
        results.append(result)

    # Named accounts are a list the channel admin keeps (hundreds, not millions): read the active
    # ones and compare them here, the way the conflict check does.
    accounts = (
        NamedAccount.objects.active().select_related("reserved_for").only(*NAMED_ACCOUNT_FIELDS, "reserved_for__name")
    )
    for account in accounts:
        reasons, exact = _named_account_hit(account, found, query)
        if not reasons:
            continue
        record = account.as_match_record()
        home = next(
            (
                result
                for result in results
                if result.customers
                and any(matching.match(record, c.as_match_record()).is_same_customer for c in result.customers)
            ),
            None,
        )
        if home is None:
            home = LookupResult()
            results.append(home)
        home.named_accounts.append(account)
        home.matched_on |= reasons
        home.exact |= exact
    results.sort(key=lambda result: result.sort_key)
    return results


def protection_lookup_log(*, user, query: str, result_count: int) -> ProtectionLookup:
    """Every lookup is on record: who asked about which customer, and how much they saw."""
    return ProtectionLookup.objects.create(user=user, query=query[:200], result_count=result_count)
