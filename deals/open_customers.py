"""The customers with an open registration (deals.models.OpenCustomer), kept exactly in sync.

Definition: one row (customer id, country, name key) per customer that has at least one
registration whose status is in Registration.OPEN_STATUSES — the registrations the conflict check
and the protection lookup call active. `open_customers_live()` computes it from the registrations;
the table must always equal it.

What changes it, and who keeps it:

- a registration created open, closed (withdrawn, rejected, won, lost, expired, revoked), moved to
  another customer or deleted: the signals below (Registration post_init/post_save/post_delete);
  every service transition saves its row, so they all pass here. Closed statuses are final, so a
  save from open to open (approve, escalate, extend …) needs nothing.
- a customer's name key or country: the Customer signals (a rename in the portal or the admin).
- the nightly expiry, bulk SQL in deals.services.protections_expire: `expired_batch_sql` there.
- a bulk load (prm.scaledata) or any repair: `open_customers_rebuild()`, also the management
  command `open_customers_rebuild` (`--check` compares only).
- a deleted customer: its row goes with it (ON DELETE CASCADE, as Django emulates it).

Whoever changes a registration's status or customer, or a customer's name key or country, past
Model.save() — an UPDATE through a queryset or raw SQL — must call `open_customers_sync(ids)`.

Concurrency (PostgreSQL, READ COMMITTED): a row is added under a share lock on the customer row
and removed under an exclusive (no key update) lock on it, so an opening and a closing of one
customer's registrations never pass each other: whichever comes second sees the first's committed
registrations. Two closings of one customer's last two registrations are serialised the same way.
SQLite serialises all writes anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.db import connection, transaction

from deals.models import Customer, OpenCustomer, Registration

OPEN = tuple(str(s) for s in Registration.OPEN_STATUSES)


def _names():
    quote = connection.ops.quote_name
    return (
        quote(OpenCustomer._meta.db_table),
        quote(Customer._meta.db_table),
        quote(Registration._meta.db_table),
    )


def _in(values) -> str:
    return ", ".join(["%s"] * len(values))


# the open statuses as SQL literals (fixed identifiers, checked here), so that every statement below
# keeps only its own parameters
assert all(re.fullmatch(r"[a-z_]+", status) for status in OPEN)
OPEN_SQL = "(" + ", ".join(f"'{status}'" for status in OPEN) + ")"


def _open_exists(alias_column: str) -> str:
    _, _, registrations = _names()
    return f"EXISTS (SELECT 1 FROM {registrations} r WHERE r.customer_id = {alias_column} AND r.status IN {OPEN_SQL})"


# --- the maintenance ------------------------------------------------------------------------------


def customer_opened(customer_id: int) -> None:
    """The customer has an open registration now (just saved in this transaction): its row, from the
    customer's committed name key and country. One statement; on PostgreSQL under a share lock on the
    customer row, which waits for a rename or a closing in progress and reads its outcome."""
    table, customers, _ = _names()
    lock = " FOR SHARE OF c" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (customer_id, country, name_key) "
            f"SELECT c.id, c.country, c.name_key FROM {customers} c WHERE c.id = %s{lock} "
            "ON CONFLICT (customer_id) DO UPDATE SET country = excluded.country, name_key = excluded.name_key",
            [customer_id],
        )


def _lock_customers(cursor, ids: list[int]) -> None:
    if connection.vendor == "postgresql" and ids:
        _, customers, _ = _names()
        cursor.execute(f"SELECT id FROM {customers} WHERE id IN ({_in(ids)}) ORDER BY id FOR NO KEY UPDATE", ids)


def customers_maybe_closed(customer_ids: Iterable[int]) -> None:
    """These customers may have lost their last open registration: their rows go if so. Two
    statements: the customers' row locks (PostgreSQL), then the delete."""
    ids = sorted({pk for pk in customer_ids if pk})
    if not ids:
        return
    table, _, _ = _names()
    exists = _open_exists(f"{table}.customer_id")
    with connection.cursor() as cursor:
        _lock_customers(cursor, ids)
        cursor.execute(f"DELETE FROM {table} WHERE customer_id IN ({_in(ids)}) AND NOT {exists}", ids)


def customer_keys_changed(customer_id: int) -> None:
    """A customer's name key or country may have changed: its row, if it has one, follows (read from
    the customer row as saved, not from an instance)."""
    table, customers, _ = _names()
    saved = f"FROM {customers} c WHERE c.id = {table}.customer_id"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET country = (SELECT c.country {saved}), name_key = (SELECT c.name_key {saved}) "
            "WHERE customer_id = %s",
            [customer_id],
        )


def open_customers_sync(customer_ids: Iterable[int]) -> None:
    """Make these customers' rows equal to the definition, whatever happened to them: remove the
    closed ones, add or refresh the open ones. For bulk changes past the signals."""
    ids = sorted({pk for pk in customer_ids if pk})
    if not ids:
        return
    table, customers, _ = _names()
    exists = _open_exists("c.id")
    with transaction.atomic():
        customers_maybe_closed(ids)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (customer_id, country, name_key) "
                f"SELECT c.id, c.country, c.name_key FROM {customers} c WHERE c.id IN ({_in(ids)}) AND {exists} "
                "ON CONFLICT (customer_id) DO UPDATE SET country = excluded.country, name_key = excluded.name_key",
                ids,
            )


def open_customers_rebuild() -> int:
    """Write the table from scratch (after a bulk load, or to repair it). Returns the row count.
    On PostgreSQL the table is locked against the signals' writes meanwhile: a change committed
    before is read, one made during waits and is applied after."""
    table, customers, _ = _names()
    exists = _open_exists("c.id")
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"DELETE FROM {table}")
        cursor.execute(
            f"INSERT INTO {table} (customer_id, country, name_key) "
            f"SELECT c.id, c.country, c.name_key FROM {customers} c WHERE {exists}"
        )
        return cursor.rowcount


def expired_batch_sql(stamped: str) -> list[str]:
    """The statements protections_expire runs after expiring a batch: the customers of the rows it
    stamped (`stamped`, its SELECT of their customer ids, with its own parameters, which
    each statement takes once) lose their row unless another registration of theirs is still open.
    The first locks those customers (as customers_maybe_closed does); on SQLite it is left out."""
    table, customers, _ = _names()
    exists = _open_exists(f"{table}.customer_id")
    statements = [f"DELETE FROM {table} WHERE customer_id IN ({stamped}) AND NOT {exists}"]
    if connection.vendor == "postgresql":
        statements.insert(0, f"SELECT id FROM {customers} WHERE id IN ({stamped}) ORDER BY id FOR NO KEY UPDATE")
    return statements


# --- the definition, live ---------------------------------------------------------------------------


def open_customers_live() -> set[tuple[int, str, str]]:
    """(customer id, country, name key) of every customer with an open registration, from the
    registrations themselves: what the table must hold."""
    return set(
        Customer.objects.filter(
            pk__in=Registration.objects.filter(status__in=Registration.OPEN_STATUSES).values("customer_id")
        ).values_list("pk", "country", "name_key")
    )


def open_customers_stored() -> set[tuple[int, str, str]]:
    return set(OpenCustomer.objects.values_list("customer_id", "country", "name_key"))


# --- the signals (connected in deals.apps) ----------------------------------------------------------


def on_registration_init(sender, instance, **kwargs):
    values = instance.__dict__
    instance._open_customer_was = (values.get("customer_id"), values.get("status"))


def on_registration_saved(sender, instance, created, update_fields=None, raw=False, **kwargs):
    was_customer, was_status = (None, None) if created else getattr(instance, "_open_customer_was", (None, None))
    customer_id, status = instance.customer_id, instance.status
    instance._open_customer_was = (customer_id, status)
    if raw:  # a fixture load: the customer row may come later
        open_customers_sync([customer_id])
        return
    if not created and update_fields is not None and not {"status", "customer"} & set(update_fields):
        return
    if not created and (was_status is None or was_customer is None):  # loaded without them: compare with the table
        open_customers_sync([customer_id])
        return
    is_open = status in OPEN
    was_open = was_status in OPEN
    if was_customer is not None and was_customer != customer_id:
        if was_open:
            customers_maybe_closed([was_customer])
        was_open = False
    if is_open and not was_open:
        customer_opened(customer_id)
    elif was_open and not is_open:
        customers_maybe_closed([customer_id])


def on_registration_deleted(sender, instance, **kwargs):
    status = instance.__dict__.get("status")
    if status is None or status in OPEN:
        customers_maybe_closed([instance.customer_id])


KEYS = ("country", "name_key")


def on_customer_init(sender, instance, **kwargs):
    values = instance.__dict__
    instance._open_customer_keys = tuple(values.get(name) for name in KEYS)


def on_customer_saved(sender, instance, created, update_fields=None, raw=False, **kwargs):
    keys = (instance.country, instance.name_key)
    was = getattr(instance, "_open_customer_keys", None)
    instance._open_customer_keys = keys
    if raw:
        open_customers_sync([instance.pk])
        return
    if created:  # no registration can point to it yet
        return
    if update_fields is not None and not set(KEYS) & set(update_fields):
        return
    if was is not None and None not in was and was == keys:
        return
    customer_keys_changed(instance.pk)
