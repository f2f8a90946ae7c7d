"""The customers with an open registration (deals.models.OpenCustomer, deals.open_customers): the
table always equals its definition computed live from the registrations, after any sequence of the
things that change it; and the conflict check and the protection lookup, which search it, answer
exactly what they answered when they searched the active registrations themselves (the reference
paths below are the code before the table, kept here)."""

import random
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from deals import conflicts, lookup, open_customers, privacy, services
from deals.conflicts import customer_keys
from deals.models import Conflict, Customer, OpenCustomer, Registration
from tests import factories
from tests.deal_factories import ProductFactory, customer_data, make_registration, reviewer_of, submit

Status = Registration.Status
OPEN = Registration.OPEN_STATUSES

WORDS = ["Bakkerij", "Slagerij", "Installatiebedrijf", "Jansen", "Jansne", "de Vries", "Peeters", "Müller", "Zonen"]
LEGAL = ["B.V.", "BV", "N.V.", "GmbH", "", "", "en Zonen"]
COUNTRIES = ["NL", "NL", "BE", "DE"]


def random_name(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, rng.randint(1, 3)) + [rng.choice(LEGAL)]).strip()


def assert_in_sync():
    assert open_customers.open_customers_stored() == open_customers.open_customers_live()


def rekey(customer: Customer) -> Customer:
    for name, value in customer_keys(customer).items():
        setattr(customer, name, value)
    return customer


def new_customer(organisation, rng: random.Random, **fields) -> Customer:
    values = {"name": random_name(rng), "city": "Utrecht", "postcode": "3511 AB", "country": rng.choice(COUNTRIES)}
    values.update(fields)
    customer = rekey(Customer(organisation=organisation, **values))
    customer.save()
    return customer


# --- the definition holds after any sequence of changes -----------------------------------------------


class Sequence:
    """Random operations on a small world, through the services where they exist."""

    def __init__(self, world, rng: random.Random):
        self.world, self.rng = world, rng
        self.dealers = [(world.own, world.own_user), (world.other, world.other_admin)]
        self.product = ProductFactory()

    def pick(self, **filters):
        rows = list(Registration.objects.filter(**filters).order_by("pk"))
        return self.rng.choice(rows) if rows else None

    def dealer_of(self, registration):
        return registration.registered_by

    # the operations -------------------------------------------------------------------------------

    def submit_new(self):
        _, actor = self.rng.choice(self.dealers)
        name = random_name(self.rng)
        submit(actor, customer=customer_data(name=name, country=self.rng.choice(COUNTRIES)))

    def submit_existing(self):
        organisation, actor = self.rng.choice(self.dealers)
        customers = list(Customer.objects.filter(organisation=organisation).order_by("pk"))
        if customers:
            submit(actor, existing_customer=self.rng.choice(customers))

    def make_direct(self):
        organisation, actor = self.rng.choice(self.dealers)
        customers = list(Customer.objects.filter(organisation=organisation).order_by("pk"))
        customer = self.rng.choice(customers) if customers and self.rng.random() < 0.6 else None
        status = self.rng.choice(list(Status))
        make_registration(organisation, actor, status, customer=customer or new_customer(organisation, self.rng))

    def approve(self):
        r = self.pick(status=Status.SUBMITTED)
        if r:
            services.registration_approve(registration=r, actor=reviewer_of(r))

    def reject(self):
        r = self.pick(status=Status.SUBMITTED)
        if r:
            services.registration_reject(registration=r, actor=reviewer_of(r), reason="No.")

    def request_info_and_maybe_resubmit(self):
        r = self.pick(status=Status.SUBMITTED)
        if r:
            services.registration_request_info(registration=r, actor=reviewer_of(r), reason="Which site?")
            if self.rng.random() < 0.5:
                services.registration_resubmit(registration=r, actor=self.dealer_of(r), reason="This one.")

    def escalate(self):
        r = self.pick(status=Status.SUBMITTED)
        if r:
            services.registration_escalate(registration=r, actor=reviewer_of(r), internal_note="Director, please.")

    def withdraw(self):
        r = self.pick(status__in=OPEN)
        if r:
            services.registration_withdraw(registration=r, actor=self.dealer_of(r), reason="Postponed.")

    def won_or_lost(self):
        r = self.pick(status=Status.APPROVED)
        if r and self.rng.random() < 0.5:
            services.registration_report_won(
                registration=r, actor=self.dealer_of(r), value=Decimal("100"), won_on=timezone.localdate()
            )
        elif r:
            services.registration_report_lost(registration=r, actor=self.dealer_of(r), reason="price")

    def expire(self):
        r = self.pick(status=Status.APPROVED)
        if r:  # its protection ended (an UPDATE past the signals that leaves the status alone)
            Registration.objects.filter(pk=r.pk).update(protected_until=timezone.localdate() - timedelta(days=1))
        services.protections_expire(batch_size=self.rng.choice([1, 3, 100_000]))

    def customer(self, **filters):
        customers = list(Customer.objects.filter(**filters).order_by("pk"))
        return self.rng.choice(customers) if customers else None

    def rename(self):
        customer = self.customer()
        if customer:
            customer.name = random_name(self.rng)
            rekey(customer).save()

    def move_country(self):
        customer = self.customer()
        if customer:
            customer.country = self.rng.choice(COUNTRIES)
            customer.save(update_fields=["country"])

    def merge(self):
        """Every registration of one customer record moved to another of the same dealer; the first goes."""
        organisation, _ = self.rng.choice(self.dealers)
        customers = list(Customer.objects.filter(organisation=organisation).order_by("pk"))
        if len(customers) < 2:
            return
        gone, kept = self.rng.sample(customers, 2)
        for registration in Registration.objects.filter(customer=gone):
            registration.customer = kept
            registration.save(update_fields=["customer"])
        gone.delete()

    def delete_registration(self):
        r = self.pick()
        if r:
            r.delete()

    def delete_customer(self):
        customer = self.customer(registrations__isnull=True)
        if customer:
            customer.delete()

    def anonymise(self):
        privacy.contacts_anonymise(now=timezone.now() + timedelta(days=3650))

    OPERATIONS = [
        (submit_new, 5),
        (submit_existing, 3),
        (make_direct, 3),
        (approve, 4),
        (reject, 1),
        (request_info_and_maybe_resubmit, 1),
        (escalate, 1),
        (withdraw, 2),
        (won_or_lost, 2),
        (expire, 2),
        (rename, 2),
        (move_country, 1),
        (merge, 1),
        (delete_registration, 1),
        (delete_customer, 1),
        (anonymise, 1),
    ]

    def step(self) -> str:
        operations, weights = zip(*self.OPERATIONS, strict=True)
        operation = self.rng.choices(operations, weights)[0]
        try:
            with transaction.atomic():
                operation(self)
        except services.RegistrationError:
            pass  # e.g. the dealer's cap of open registrations: nothing changed
        return operation.__name__


@pytest.mark.parametrize("seed", range(6))
def test_the_table_equals_its_definition_after_any_sequence(world, seed):
    sequence = Sequence(world, random.Random(seed))
    done = []
    for _ in range(45):
        done.append(sequence.step())
        assert open_customers.open_customers_stored() == open_customers.open_customers_live(), done
    assert OpenCustomer.objects.exists() and len(set(done)) > 8  # the sequence did something


def test_each_change_keeps_the_row(world):
    rng = random.Random(1)
    registration = submit(world, customer=customer_data(name="Bakkerij Jansen B.V."))
    customer = registration.customer
    assert open_customers.open_customers_stored() == {(customer.pk, "NL", "bakkerij jansen")}
    second = submit(world, existing_customer=customer)
    services.registration_withdraw(registration=registration, actor=world.own_user)
    assert OpenCustomer.objects.filter(customer=customer).exists()  # the second is still open
    customer.name, customer.country = "Slagerij Jansen", "BE"
    rekey(customer).save()
    assert open_customers.open_customers_stored() == {(customer.pk, "BE", "slagerij jansen")}
    services.registration_approve(registration=second, actor=reviewer_of(second))
    Registration.objects.filter(pk=second.pk).update(protected_until=timezone.localdate() - timedelta(days=1))
    assert OpenCustomer.objects.exists()  # expired tonight, not yet
    assert services.protections_expire() == 1
    assert not OpenCustomer.objects.exists()
    third = make_registration(world.own, world.own_user, Status.ESCALATED, customer=customer)
    assert OpenCustomer.objects.filter(customer=customer).exists()
    third.delete()
    assert not OpenCustomer.objects.exists()
    other = new_customer(world.own, rng)
    fourth = make_registration(world.own, world.own_user, Status.SUBMITTED, customer=customer)
    fourth.customer = other
    fourth.save()
    assert open_customers.open_customers_stored() == {(other.pk, other.country, other.name_key)}


def test_a_registration_read_without_its_status_is_compared_with_the_table(world):
    registration = submit(world, customer=customer_data(name="Bakkerij Jansen B.V."))
    partial = Registration.objects.only("pk", "customer").get(pk=registration.pk)
    Registration.objects.filter(pk=registration.pk).update(status=Status.WITHDRAWN)  # behind the signals' back
    partial.save(update_fields=["customer"])  # a save that knows no status: the row is recomputed
    assert_in_sync()
    assert not OpenCustomer.objects.exists()


def test_rebuild_and_its_command(world):
    rng = random.Random(3)
    for status in list(Status) * 2:
        make_registration(world.own, world.own_user, status, customer=new_customer(world.own, rng))
    live = open_customers.open_customers_live()
    assert len(live) == 2 * len(OPEN)
    OpenCustomer.objects.all().delete()
    OpenCustomer.objects.create(customer=Customer.objects.first(), country="XX", name_key="wrong")
    with pytest.raises(SystemExit):
        call_command("open_customers_rebuild", "--check")
    assert open_customers.open_customers_rebuild() == len(live)
    assert open_customers.open_customers_stored() == live
    call_command("open_customers_rebuild", "--check")
    open_customers.open_customers_sync([c for c, _, _ in live])  # nothing to change
    assert open_customers.open_customers_stored() == live


def test_bulk_sync_repairs_what_an_update_changed_behind_the_signals(world):
    rng = random.Random(4)
    registrations = [
        make_registration(world.own, world.own_user, Status.SUBMITTED, customer=new_customer(world.own, rng))
        for _ in range(4)
    ]
    closed = [r.pk for r in registrations[:2]]
    Registration.objects.filter(pk__in=closed).update(status=Status.REJECTED)
    Customer.objects.filter(pk=registrations[3].customer_id).update(name_key="renamed")
    open_customers.open_customers_sync([r.customer_id for r in registrations])
    assert_in_sync()
    assert {row[0] for row in open_customers.open_customers_stored()} == {r.customer_id for r in registrations[2:]}


# --- the searches answer as before -----------------------------------------------------------------


def reference_similar_names(customer):
    """The conflict check's candidates before the table: the active registrations' copy of the name key
    (on PostgreSQL through their partial trigram index, migration 0007)."""
    active = tuple(map(str, conflicts.ACTIVE))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('pg_trgm.similarity_threshold', %(threshold)s, true);"
                "SELECT customer_id, customer_name_key FROM deals_registration "
                "WHERE status IN %(active)s AND customer_name_key %% %(name)s",
                {"threshold": str(conflicts.TRIGRAM_THRESHOLD), "active": active, "name": customer.name_key},
            )
            return cursor.fetchall()
    return list(
        Registration.objects.filter(status__in=active, customer__country=customer.country).values_list(
            "customer_id", "customer_name_key"
        )
    )


def reference_similar_customer_ids(found):
    """The lookup's similar names before the table (deals.lookup at the same commit)."""
    active = tuple(map(str, lookup.ACTIVE))
    if connection.vendor == "postgresql":
        part = found.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('pg_trgm.similarity_threshold', %(threshold)s, true);"
                "SELECT customer_id, customer_name_key FROM deals_registration WHERE status IN %(active)s "
                "AND (customer_name_key LIKE %(part)s OR customer_name_key %% %(name)s)",
                {
                    "threshold": str(conflicts.TRIGRAM_THRESHOLD),
                    "active": active,
                    "part": f"%{part}%",
                    "name": found.name,
                },
            )
            keys = dict(cursor.fetchall())
    else:
        keys = dict(Registration.objects.filter(status__in=active).values_list("customer_id", "customer_name_key"))
    plausible = sorted(
        (key, customer_id)
        for customer_id, key in keys.items()
        if found.name in key or lookup.matching.names_may_match(found.name, key)
    )
    return [customer_id for _, customer_id in plausible[: lookup.CANDIDATE_LIMIT]]


@pytest.fixture
def varied(world):
    """Customers of both dealers with names sharing words and typos, in three countries, with open and
    closed registrations (several per customer), some renamed after registering."""
    rng = random.Random(7)
    sequence = Sequence(world, rng)
    for _ in range(70):
        sequence.step()
    assert_in_sync()
    return rng


def probe_customers(world, rng, count=60):
    """Unsaved customers as another dealer would type them: the existing names with typos, in the same
    and in other countries, and new names."""
    names = list(Customer.objects.values_list("name", "country"))
    probes = []
    for i in range(count):
        name, country = rng.choice(names)
        if i % 3 == 1:
            position = rng.randrange(len(name))
            name = name[:position] + name[position + 1 :]  # a letter dropped
        elif i % 3 == 2:
            name = random_name(rng)
        if i % 4 == 3:
            country = rng.choice(COUNTRIES)
        probe = rekey(Customer(organisation=world.orphan, name=name, city="Utrecht", postcode="3511", country=country))
        probe.pk = 10**9 + i  # never one of the stored customers
        probes.append(probe)
    return probes


def test_conflict_candidates_are_those_of_the_registrations(world, varied, monkeypatch):
    probes = probe_customers(world, varied)
    new = [(set(conflicts._similar_names(p)), conflicts._plausible_candidates(p)) for p in probes]
    monkeypatch.setattr(conflicts, "_similar_names", reference_similar_names)
    old = [(set(reference_similar_names(p)), conflicts._plausible_candidates(p)) for p in probes]
    # the same candidates; the similar names the same up to the country, which the table's query
    # now asks for itself (the reference left it to the candidates' query)
    for probe, (similar, candidates), (similar_before, candidates_before) in zip(probes, new, old, strict=True):
        assert candidates == candidates_before, probe.name
        country = dict(Customer.objects.values_list("pk", "country"))
        assert similar == {(pk, key) for pk, key in similar_before if country[pk] == probe.country}, probe.name
    assert any(candidates for _, candidates in new)  # the probes found something


def test_conflict_detection_is_the_same(world, varied, monkeypatch):
    """conflicts_detect on new registrations (typed like existing customers): the same conflicts and
    flags through the table as through the reference search."""
    rng = random.Random(8)
    names = list(Customer.objects.values_list("name", "country"))
    product = ProductFactory()
    dealer = factories.dealer_user(world.orphan, user__email="user@orphan.example")
    found = 0
    for i in range(25):
        name, country = rng.choice(names)
        with transaction.atomic():
            registration = submit(
                dealer,
                customer=customer_data(name=name if i % 2 else name.lower() + " bv", country=country),
                lines=[services.LineData(product=product, quantity=1)],
            )

            def outcome(r=registration):
                detection = conflicts.conflicts_detect(r)
                return (
                    sorted((c.other_id, c.kind, c.score, tuple(c.reasons)) for c in detection.conflicts),
                    sorted((f.kind, f.explanation) for f in detection.flags),
                )

            new = outcome()
            with monkeypatch.context() as patch:
                patch.setattr(conflicts, "_similar_names", reference_similar_names)
                assert outcome() == new, name
            found += bool(new[0])
            transaction.set_rollback(True)
    assert found  # some found another dealer's registration


def test_lookup_answers_the_same(world, varied, monkeypatch):
    direct = factories.direct_sales(email="direct.rep@vendor.example")
    rng = random.Random(9)
    names = [name for name, _ in Customer.objects.values_list("name", "country")]
    queries = [rng.choice(names) for _ in range(20)] + ["jansen", "bakkerij", "zonen", "installatie", "muller", "j"]
    queries += [name[:-2] for name in rng.sample(names, 10)] + [
        name.replace("a", "e", 1) for name in rng.sample(names, 10)
    ]

    def answers(query):
        return [
            (
                r.name,
                r.exact,
                sorted(r.matched_on),
                [c.pk for c in r.customers],
                [x.pk for x in r.registrations],
                [a.pk for a in r.named_accounts],
                r.answers(),
            )
            for r in lookup.protection_lookup(query=query, user=direct)
        ]

    new = {query: answers(query) for query in queries}
    monkeypatch.setattr(lookup, "_similar_customer_ids", reference_similar_customer_ids)
    assert {query: answers(query) for query in queries} == new
    assert sum(bool(v) for v in new.values()) > len(queries) / 3


# --- concurrency (PostgreSQL) -------------------------------------------------------------------------


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite serialises all writes; the locks are PostgreSQL's"
)
@pytest.mark.django_db(transaction=True)
def test_a_decision_closing_a_registration_and_a_submission_of_its_customer_do_not_deadlock(world):
    """The regional director awards A (locked) and takes B from its dealer (closing B: B's customer is
    locked, deals.open_customers), while that dealer submits B's customer again, whose conflict check
    refers to A. The submission holds the customer; it must not wait for A's lock in turn."""
    rng = random.Random(5)
    a = make_registration(world.own, world.own_user, Status.ESCALATED, customer=new_customer(world.own, rng))
    customer = new_customer(world.other, rng)
    b = make_registration(world.other, world.other_admin, Status.ESCALATED, customer=customer)
    both_hold = threading.Barrier(2)
    errors = []

    def decision():
        try:
            with transaction.atomic():
                services._lock(a)
                both_hold.wait(timeout=10)
                taken = services._lock(b)
                taken.status = Status.REVOKED
                taken.save(update_fields=["status"])  # waits for the submission of its customer
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    def submission():
        try:
            with transaction.atomic():
                new = make_registration(world.other, world.other_admin, Status.SUBMITTED, customer=customer)
                both_hold.wait(timeout=10)
                Conflict.objects.create(registration=new, other=a, kind="conflict", score=1)  # refers to A
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=decision), threading.Thread(target=submission)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert Registration.objects.get(pk=b.pk).status == Status.REVOKED
    assert_in_sync()
    assert OpenCustomer.objects.filter(customer=customer).exists()  # the new submission keeps it open
