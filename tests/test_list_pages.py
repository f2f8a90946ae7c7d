"""The registration list, the review queue and the submission at scale (issue 8): the same rows in the
same order on every page, the same HTML, the same counts, with a fixed number of queries."""

from datetime import timedelta

import pytest
from django import forms
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from deals import services
from deals.filters import FastSelect, RegistrationFilter, ReviewQueueFilter
from deals.models import ReferenceCounter, Registration
from deals.views import PAGE_SIZE
from tests import deal_factories as df
from tests import factories
from tests.conftest import client_for

Status = Registration.Status


def count_queries(client, url, data=None):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, data)
    assert response.status_code == 200
    return len(ctx.captured_queries), response


def rows_of(response):
    return [r.pk for r in response.context["page"].object_list]


def make_many(organisation, user, count, *, statuses=(Status.SUBMITTED,), same_time_every=3):
    """`count` registrations whose first submissions tie in groups of `same_time_every`: the lists
    order ties by id, newest first."""
    customer = df.CustomerFactory(organisation=organisation)
    product = df.ProductFactory()
    start = timezone.now() - timedelta(days=30)
    return [
        df.make_registration(
            organisation,
            user,
            statuses[i % len(statuses)],
            customer=customer,
            products=[product],
            first_submitted_at=start + timedelta(hours=i // same_time_every),
        )
        for i in range(count)
    ]


# --- FastSelect writes what Django's Select writes --------------------------------------------------


@pytest.mark.parametrize(
    "choices, value, attrs",
    [
        ([("", "---------"), ("a", "A"), ("b", "B & <b>")], "b", {"id": "id_x"}),
        ([(1, "One"), (2, "Two \"quoted\" 'single'"), (3, mark_safe("<em>safe</em>"))], 2, {"required": True}),
        ([("Group <1>", [("x", "X"), ("y", "Y")]), ("z", "Z")], "y", {"disabled": False, "data-x": "1 < 2"}),
        ([], None, {}),
        ([(10_000, 12_345)], 10_000, {"class": mark_safe("a&amp;b")}),
    ],
)
def test_fast_select_renders_exactly_as_django(choices, value, attrs):
    fast = FastSelect(attrs={"class": "c"}, choices=choices)
    plain = forms.Select(attrs={"class": "c"}, choices=choices)
    assert str(fast.render("field", value, attrs=attrs)) == str(plain.render("field", value, attrs=attrs))


@pytest.mark.parametrize("persona", ["own_user", "pm_a", "channel_admin"])
@pytest.mark.parametrize("query", [{}, {"status": "submitted", "ordering": "-value"}, {"organisation": "x"}])
def test_filter_forms_are_unchanged(world, persona, query, monkeypatch):
    user = getattr(world, persona)
    make_many(world.own, world.own_user, 2)

    def html(filterset_class):
        filterset = filterset_class(query or None, queryset=Registration.objects.all(), user=user)
        filterset.qs  # noqa: B018  (validates the form)
        return "".join(str(field) for field in filterset.form)

    classes = [RegistrationFilter] + ([ReviewQueueFilter] if user.is_vendor_staff else [])
    fast = [html(cls) for cls in classes]
    monkeypatch.setattr(FastSelect, "render", forms.Select.render)
    assert fast == [html(cls) for cls in classes]
    assert "<select" in fast[0]


# --- the dealer's list -------------------------------------------------------------------------------


def test_dealer_list_pages_keep_the_order_with_ties(world):
    mine = make_many(world.own, world.own_user, 2 * PAGE_SIZE + 7, statuses=(Status.SUBMITTED, Status.WON))
    make_many(world.other, world.other_admin, 5)  # another dealer's: never listed
    expected = [r.pk for r in sorted(mine, key=lambda r: (r.first_submitted_at, r.pk), reverse=True)]
    client = client_for(world.own_user)
    url = reverse("deals:registration_list")
    pages = [client.get(url, {"page": n}) for n in (1, 2, 3)]
    assert sum((rows_of(p) for p in pages), []) == expected
    assert pages[2].context["page"].paginator.count == len(expected)
    assert rows_of(client.get(url, {"page": 99})) == rows_of(pages[2])  # past the end: the last page
    won = [pk for pk in expected if Registration.objects.get(pk=pk).status == Status.WON]
    filtered = [client.get(url, {"status": "won", "page": n}) for n in (1, 2)]
    assert sum((rows_of(p) for p in filtered), []) == won
    # an order the dealer chooses sorts by that column alone (ties in any order, as before)
    times = [r.first_submitted_at for r in client.get(url, {"ordering": "submitted"}).context["page"].object_list]
    assert times == sorted(r.first_submitted_at for r in mine)[:PAGE_SIZE]


def test_dealer_list_queries_do_not_grow_with_rows_or_page(world):
    client = client_for(world.own_user)
    url = reverse("deals:registration_list")
    make_many(world.own, world.own_user, 3)
    client.get(url)
    few, _ = count_queries(client, url)
    make_many(world.own, world.own_user, 3 * PAGE_SIZE)
    assert count_queries(client, url)[0] == few
    assert count_queries(client, url, {"page": 4})[0] == few
    assert count_queries(client, url, {"page": 2, "status": "submitted"})[0] == few


def test_empty_list_page(world):
    response = client_for(world.own_user).get(reverse("deals:registration_list"))
    assert rows_of(response) == [] and b"You have not registered any deals yet" in response.content


# --- the review queue --------------------------------------------------------------------------------


def test_review_queue_counts_and_order(world):
    now = timezone.now()
    mine = make_many(world.own, world.own_user, PAGE_SIZE + 5, statuses=(Status.SUBMITTED, Status.INFO_REQUESTED))
    overdue = mine[:4]
    for i, r in enumerate(mine):  # deadlines tie in pairs; four of them passed
        Registration.objects.filter(pk=r.pk).update(
            review_due_at=now + timedelta(hours=(i // 2) - (2 if r in overdue else -1))
        )
    make_many(world.other, world.other_admin, 3)  # another partner manager's
    queue = list(Registration.objects.filter(organisation=world.own).order_by("review_due_at", "pk"))
    client = client_for(world.pm_a)
    url = reverse("deals:review_queue")

    first, second = client.get(url), client.get(url, {"page": 2})
    assert rows_of(first) + rows_of(second) == [r.pk for r in queue]
    assert first.context["page"].paginator.count == len(queue) == second.context["page"].paginator.count
    waiting = [r for r in queue if r.status == Status.SUBMITTED]
    summary = first.context["summary"]
    assert summary["waiting"] == len(waiting)
    assert summary["overdue"] == len([r for r in waiting if r.review_due_at <= now])
    assert f"{len(queue)} in all".encode() in first.content

    for data, expected in [
        ({"status": "info_requested"}, [r for r in queue if r.status == Status.INFO_REQUESTED]),
        ({"organisation": world.own.pk, "page": 2}, queue),
        ({"overdue": "on"}, [r for r in waiting if r.review_due_at <= now]),
        ({"status": "", "overdue": ""}, queue),
        ({"organisation": "not a number"}, queue),
    ]:
        response = client.get(url, data)
        assert response.context["page"].paginator.count == len(expected), data
        assert response.context["summary"]["waiting"] == len(waiting), data  # always the whole queue


def test_review_queue_queries_do_not_grow(world):
    client = client_for(world.pm_a)
    url = reverse("deals:review_queue")
    make_many(world.own, world.own_user, 2)
    client.get(url)
    few, _ = count_queries(client, url)
    filtered, _ = count_queries(client, url, {"status": "submitted"})
    make_many(world.own, world.own_user, 2 * PAGE_SIZE)
    assert count_queries(client, url)[0] == few
    assert count_queries(client, url, {"page": 3})[0] == few
    assert count_queries(client, url, {"status": "submitted"})[0] == filtered == few + 1  # its own count


# --- submitting ---------------------------------------------------------------------------------------


def test_references_count_up_from_the_first_of_the_year(world):
    year = timezone.localtime().year
    ReferenceCounter.objects.all().delete()
    first = df.submit(world)
    second = df.submit(world, customer=df.customer_data(name="Tweede B.V."))
    assert [first.reference, second.reference] == [f"REG-{year}-000001", f"REG-{year}-000002"]
    ReferenceCounter.objects.filter(year=year).update(last=41)
    assert df.submit(world, customer=df.customer_data(name="Derde B.V.")).reference == f"REG-{year}-000042"
    assert ReferenceCounter.objects.get(year=year).last == 42


def test_submit_writes_to_the_partner_manager_else_the_regional_director(world):
    """Read with the organisation the submission locks (Organisation.account_manager)."""
    from prm.models import OutboxEmail

    def recipients(registration):
        return set(OutboxEmail.objects.filter(topic=registration.reference).values_list("to", flat=True))

    assert recipients(df.submit(world)) == {world.own_user.email, world.pm_a.email}
    orphan_user = factories.dealer_user(world.orphan)
    assert recipients(df.submit(orphan_user)) == {orphan_user.email, world.rd_north.email}
    world.pm_a.is_active = False
    world.pm_a.save()
    registration = df.submit(world, customer=df.customer_data(name="Tweede B.V."))
    assert recipients(registration) == {world.own_user.email, world.rd_north.email}


def test_submit_queries_do_not_grow_with_lines(world):
    def queries(lines):
        with CaptureQueriesContext(connection) as ctx:
            df.submit(world, customer=df.customer_data(name=f"Klant {len(lines)} B.V."), lines=lines)
        return len(ctx.captured_queries)

    one = [services.LineData(product=df.ProductFactory(), quantity=1)]
    three = [services.LineData(product=df.ProductFactory(), quantity=i + 1) for i in range(3)]
    df.submit(world)  # the year's counter row exists from here on
    assert queries(one) == queries(three)


def test_submit_at_the_cap_is_refused_with_the_cap_given(world):
    df.submit(world)
    with pytest.raises(services.RegistrationError, match="1 open registrations"):
        df.submit(world, customer=df.customer_data(name="Tweede B.V."), cap=1)
