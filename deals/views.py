from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q, Sum
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from dealers.models import Organisation
from dealers.views import staff_required
from deals import conflicts, services
from deals.filters import RegistrationFilter, ReviewQueueFilter
from deals.forms import (
    CustomerForm,
    DecisionTextForm,
    ExtensionForm,
    LineFormSet,
    LostForm,
    ReasonForm,
    RegistrationDetailsForm,
    RegistrationUpdateForm,
    WonForm,
)
from deals.models import Conflict, ExtensionRequest, ProgrammeSettings, Registration
from prm.ratelimit import rate_limit_consume
from tiers.forms import SatisfactionForm
from tiers.models import SatisfactionScore

PAGE_SIZE = 25


class IdsFirstPaginator(Paginator):
    """A page of a list read as its ids first, in the same statement: the list's order picks the
    page's ids (from an index alone where one fits, as the dealer's list does with
    Registration's organisation/first-submitted/id index), and only those rows are then read with
    their joins and annotations. A plain LIMIT/OFFSET reads and joins every row it skips: at 5,000
    registrations, page 150 joined 3,750 customers to show 25, and PostgreSQL sorted all 5,000."""

    def _get_page(self, object_list, number, paginator):
        # object_list is this page's slice of self.object_list
        return super()._get_page(self.object_list.filter(pk__in=object_list.values("pk")), number, paginator)


def _page(request, queryset, *, count: int | None = None):
    """The requested page of `queryset`; `count`: its number of rows when the view knows it already."""
    paginator = IdsFirstPaginator(queryset, PAGE_SIZE)
    if count is not None:
        paginator.count = count  # instead of a COUNT(*) of its own
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return page, query.urlencode()


def _registration_for(request, pk):
    """The one way views fetch a registration: scoped to the user, 404 otherwise."""
    queryset = Registration.objects.visible_to(request.user).select_related(
        "organisation__region__regional_director", "organisation__partner_manager", "customer", "registered_by"
    )
    return get_object_or_404(queryset, pk=pk)


def _dealer_only(request):
    if request.user.membership is None:
        raise Http404("Not found")
    return request.user.membership


def _posted(request, prefix: str) -> dict:
    start = f"{prefix}-" if prefix else ""
    return {key[len(start) :]: value for key, value in request.POST.items() if key.startswith(start)}


def _posted_lines(request, prefix: str, *, extra: int) -> list[dict]:
    try:
        count = min(int(request.POST.get(f"{prefix}-TOTAL_FORMS", 1)), 49)
    except ValueError:
        count = 1
    lines = [
        {name: request.POST.get(f"{prefix}-{i}-{name}", "") for name in ("product", "quantity", "value")}
        for i in range(count)
    ]
    return lines + [{}] * extra


def _lines_from(formset) -> list[services.LineData]:
    return [
        services.LineData(product=data["product"], quantity=data["quantity"], value=data.get("value"))
        for data in formset.filled_lines()
    ]


# --- lists ---------------------------------------------------------------------------------------


@login_required
def registration_list(request):
    user = request.user
    if not user.is_vendor_staff:
        _dealer_only(request)
    queryset = (
        Registration.objects.of_dealers_visible_to(user)
        .select_related("customer", "organisation")
        .order_by("-first_submitted_at", "-pk")
    )
    filterset = RegistrationFilter(request.GET or None, queryset=queryset, user=user)
    page, query = _page(request, filterset.qs)
    context = {"filter": filterset, "page": page, "query": query, "today": timezone.localdate()}
    if not user.is_vendor_staff:
        organisation = user.membership.organisation
        context["cap"] = services.open_registration_cap(organisation)
        context["open_count"] = services.open_registration_count(organisation)
    return render(request, "deals/registration_list.html", context)


@staff_required
def review_queue(request):
    queryset = conflicts.annotate_flagged(
        Registration.objects.review_queue_for(request.user)
        .select_related("customer", "organisation")
        .order_by("review_due_at", "pk")
    )
    filterset = ReviewQueueFilter(request.GET or None, queryset=queryset, user=request.user)
    now = timezone.now()
    submitted = Q(status=Registration.Status.SUBMITTED)
    summary = queryset.aggregate(
        total=Count("pk"),
        waiting=Count("pk", filter=submitted),
        overdue=Count("pk", filter=submitted & Q(review_due_at__lte=now)),
    )
    # the whole queue's count is the page's count too, unless a filter narrowed the list
    page, query = _page(request, filterset.qs, count=None if filterset.narrows else summary["total"])
    # the dealers Registration.objects.of_dealers_visible_to lists, joined directly (fewer tables for
    # PostgreSQL to plan); the page shows the registration, its dealer and customer, not who asked
    extensions = (
        ExtensionRequest.objects.filter(
            status=ExtensionRequest.Status.PENDING,
            registration__status=Registration.Status.APPROVED,
            registration__organisation__in=Organisation.objects.visible_to(request.user),
        )
        .select_related("registration__organisation", "registration__customer")
        .order_by("requested_at")[:50]
    )
    return render(
        request,
        "deals/review_queue.html",
        {"filter": filterset, "page": page, "query": query, "now": now, "summary": summary, "extensions": extensions},
    )


@staff_required
@require_POST
def review_bulk_approve(request):
    values = request.POST.getlist("registration")
    ids = [int(v) for v in values if v.isdecimal() and len(v) < 18] if values else None
    if values and len(ids) != len(values):
        ids = None
    if not ids:
        messages.error(request, "Select the registrations to approve first.")
        return redirect("deals:review_queue")
    try:
        result = services.registrations_bulk_approve(registration_ids=ids, actor=request.user)
    except services.RegistrationError as exc:
        messages.error(request, str(exc))
        return redirect("deals:review_queue")
    if result.approved:
        messages.success(request, f"Approved {len(result.approved)}: {', '.join(result.approved)}.")
    for reference, reason in result.refused.items():
        messages.warning(request, f"{reference} not approved: {reason}")
    return redirect("deals:review_queue")


# --- registering -----------------------------------------------------------------------------------


@login_required
def registration_create(request):
    membership = _dealer_only(request)
    organisation = membership.organisation
    cap = services.open_registration_cap(organisation)
    open_count = services.open_registration_count(organisation)
    if open_count >= cap:
        return render(request, "deals/registration_cap_reached.html", {"cap": cap, "open_count": open_count})
    data = request.POST if request.method == "POST" else None
    adding_line = data is not None and "add_line" in data
    refusal = None
    if data is not None and not adding_line:
        refusal = rate_limit_consume(
            scope="registration-submit", key=request.user.pk, per_hour=settings.PRM_REGISTRATION_SUBMITS_PER_HOUR
        )
    if adding_line or refusal:
        # Without JavaScript, "add a line": the form again with one more line and no errors yet.
        # Over the rate limit: the form again exactly as typed, nothing validated or saved.
        data = None
        customer_form = CustomerForm(organisation=organisation, prefix="customer", initial=_posted(request, "customer"))
        details_form = RegistrationDetailsForm(prefix="deal", initial=_posted(request, "deal"))
        line_formset = LineFormSet(
            prefix="lines", initial=_posted_lines(request, "lines", extra=1 if adding_line else 0)
        )
    else:
        customer_form = CustomerForm(data, organisation=organisation, prefix="customer")
        details_form = RegistrationDetailsForm(data, prefix="deal")
        line_formset = LineFormSet(data, prefix="lines")
    if data is not None and all([customer_form.is_valid(), details_form.is_valid(), line_formset.is_valid()]):
        c, d = customer_form.cleaned_data, details_form.cleaned_data
        try:
            registration = services.registration_submit(
                actor=request.user,
                existing_customer=c.get("existing"),
                customer=None
                if c.get("existing")
                else services.CustomerData(
                    name=c["name"],
                    city=c["city"],
                    postcode=c["postcode"],
                    country=c["country"],
                    website=c["website"],
                    vat_number=c["vat_number"],
                    company_number=c["company_number"],
                ),
                contact_name=d["contact_name"],
                contact_email=d["contact_email"],
                contact_phone=d["contact_phone"],
                lines=_lines_from(line_formset),
                expected_close_date=d["expected_close_date"],
                competitors=d["competitors"],
                decision_stage=d["decision_stage"],
                next_steps=d["next_steps"],
                cap=cap,
            )
        except services.RegistrationError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"{registration.reference} is registered. Your partner manager decides by "
                f"{timezone.localtime(registration.review_due_at):%A %d %B, %H:%M}.",
            )
            return redirect("deals:registration_detail", pk=registration.pk)
    return render(
        request,
        "deals/registration_form.html",
        {
            "customer_form": customer_form,
            "details_form": details_form,
            "line_formset": line_formset,
            "cap": cap,
            "open_count": open_count,
            "optional_open": request.method == "POST" and not adding_line,
            "refusal": refusal,
        },
        status=429 if refusal else 200,
    )


# --- one registration ------------------------------------------------------------------------------


def _timeline(registration, *, staff: bool):
    events = registration.events.select_related("actor").order_by("created_at", "pk")
    if not staff:
        events = events.defer("internal_note")
    return [
        {
            "at": e.created_at,
            "action": services.ACTION_WORDS.get(e.action, e.action.replace("_", " ")),
            "to_status": e.get_to_status_display(),
            "actor": e.actor.display_name if e.actor else "Portal",
            "reason": e.reason,
            "internal_note": e.internal_note if staff else "",
        }
        for e in events
    ]


def _dealer_history(registration):
    """The dealer's record with the programme, for the reviewer."""
    by_status = dict(
        Registration.objects.filter(organisation_id=registration.organisation_id)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    won_value = Registration.objects.filter(
        organisation_id=registration.organisation_id, status=Registration.Status.WON
    ).aggregate(total=Sum("won_value"))["total"]
    decided = sum(by_status.get(s, 0) for s in ("won", "lost"))
    return {
        "by_status": [(Registration.Status(s).label, n) for s, n in sorted(by_status.items())],
        "total": sum(by_status.values()),
        "won_value": won_value,
        "win_rate": round(100 * by_status.get("won", 0) / decided) if decided else None,
        "recent": Registration.objects.filter(organisation_id=registration.organisation_id)
        .exclude(pk=registration.pk)
        .select_related("customer")
        .order_by("-first_submitted_at")[:5],
    }


@login_required
def registration_detail(request, pk):
    registration = _registration_for(request, pk)
    user = request.user
    staff = user.is_vendor_staff
    is_dealer = services.is_dealer_of(user, registration.organisation_id)
    actions = services.allowed_actions(registration)
    programme = ProgrammeSettings.load()
    pending_extension = registration.extension_requests.filter(status=ExtensionRequest.Status.PENDING).first()
    context = {
        "registration": registration,
        "lines": registration.lines.select_related("product__line"),
        "timeline": _timeline(registration, staff=staff),
        "days_left": registration.days_left(),
        "is_dealer": is_dealer,
        "staff": staff,
        "actions": actions,
        "pending_extension": pending_extension,
        "now": timezone.now(),
    }
    if is_dealer:
        can_extend = (
            registration.status == Registration.Status.APPROVED
            and registration.extension_count < programme.max_extensions
            and pending_extension is None
        )
        context.update(
            can_extend=can_extend,
            extension_form=ExtensionForm() if can_extend else None,
            won_form=WonForm(initial={"won_value": registration.expected_value, "won_date": timezone.localdate()}),
            lost_form=LostForm(),
            max_extensions=programme.max_extensions,
        )
    if is_dealer:
        context.update(dealer_notice=conflicts.dealer_notice(registration))
    if staff:
        context.update(
            conflict_rows=conflicts.side_by_side(registration),
            has_blocking_conflict=conflicts.blocking_conflicts(registration).exists(),
            flags=registration.flags.all(),
            reason_form=ReasonForm(),
            can_review=services.is_reviewer_of(user, registration.organisation_id),
            can_direct=services.is_director_of(user, registration.organisation_id),
            history=_dealer_history(registration)
            if services.is_reviewer_of(user, registration.organisation_id)
            else None,
        )
        if registration.status == Registration.Status.WON:
            satisfaction = SatisfactionScore.objects.filter(registration=registration).select_related("recorded_by")
            context.update(satisfaction=satisfaction.first(), satisfaction_form=SatisfactionForm())
    return render(request, "deals/registration_detail.html", context)


@login_required
def registration_update(request, pk):
    registration = _registration_for(request, pk)
    if not services.is_dealer_of(request.user, registration.organisation_id):
        raise Http404("Not found")
    if not registration.is_open:
        messages.error(request, f"{registration.reference} is closed; it can no longer be changed.")
        return redirect("deals:registration_detail", pk=pk)
    lines = registration.lines.all()
    data = request.POST if request.method == "POST" else None
    initial = {
        "expected_close_date": registration.expected_close_date,
        "decision_stage": registration.decision_stage,
        "competitors": registration.competitors,
        "next_steps": registration.next_steps,
    }
    initial_lines = [{"product": line.product_id, "quantity": line.quantity, "value": line.value} for line in lines]
    if data is not None and "add_line" in data:  # without JavaScript: one more line, no errors yet
        data, initial, initial_lines = None, _posted(request, ""), _posted_lines(request, "lines", extra=1)
    form = RegistrationUpdateForm(data, current_close_date=registration.expected_close_date, initial=initial)
    line_formset = LineFormSet(data, prefix="lines", initial=initial_lines)
    if data is not None and form.is_valid() and line_formset.is_valid():
        try:
            services.registration_update(
                registration=registration,
                actor=request.user,
                lines=_lines_from(line_formset),
                **form.cleaned_data,
            )
        except services.RegistrationError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{registration.reference} is updated.")
            return redirect("deals:registration_detail", pk=pk)
    return render(
        request,
        "deals/registration_update.html",
        {"registration": registration, "form": form, "line_formset": line_formset},
    )


def _run(request, registration, call, success: str):
    try:
        call()
    except services.RegistrationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success.format(ref=registration.reference))
    return redirect("deals:registration_detail", pk=registration.pk)


@login_required
def registration_withdraw(request, pk):
    registration = _registration_for(request, pk)
    if not services.is_dealer_of(request.user, registration.organisation_id):
        raise Http404("Not found")
    if request.method != "POST":
        return render(request, "deals/registration_withdraw_confirm.html", {"registration": registration})
    text = DecisionTextForm(request.POST)
    if not text.is_valid():
        return _form_errors(request, registration, text)
    reason = text.cleaned_data["reason"]
    return _run(
        request,
        registration,
        lambda: services.registration_withdraw(registration=registration, actor=request.user, reason=reason),
        "{ref} is withdrawn.",
    )


@login_required
@require_POST
def registration_dealer_action(request, pk, action):
    """The dealer's one-step actions: resubmit, report won or lost, request an extension."""
    registration = _registration_for(request, pk)
    if not services.is_dealer_of(request.user, registration.organisation_id):
        raise Http404("Not found")
    user = request.user
    if action == "resubmit":
        text = DecisionTextForm(request.POST)
        if not text.is_valid():
            return _form_errors(request, registration, text)
        reason = text.cleaned_data["reason"]
        return _run(
            request,
            registration,
            lambda: services.registration_resubmit(registration=registration, actor=user, reason=reason),
            "{ref} is resubmitted; the review starts again.",
        )
    if action not in DEALER_FORM_ACTIONS:
        raise Http404("Not found")
    form_class, call, success = DEALER_FORM_ACTIONS[action]
    form = form_class(request.POST)
    if not form.is_valid():
        return _form_errors(request, registration, form)
    return _run(request, registration, lambda: call(registration, user, form.cleaned_data), success)


# The dealer's form-backed actions: the form, the service call with its cleaned data, the message.
DEALER_FORM_ACTIONS = {
    "won": (
        WonForm,
        lambda r, user, data: services.registration_report_won(
            registration=r, actor=user, value=data["won_value"], won_on=data["won_date"]
        ),
        "Congratulations: {ref} is reported won.",
    ),
    "lost": (
        LostForm,
        lambda r, user, data: services.registration_report_lost(
            registration=r, actor=user, reason=data["lost_reason"], competitor=data["lost_competitor"]
        ),
        "{ref} is reported lost.",
    ),
    "extend": (
        ExtensionForm,
        lambda r, user, data: services.extension_request(registration=r, actor=user, reason=data["reason"]),
        "Extension requested for {ref}; your partner manager decides.",
    ),
}


def _form_errors(request, registration, form):
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else ""
        for error in errors:
            messages.error(request, f"{label}: {error}" if label else error)
    return redirect("deals:registration_detail", pk=registration.pk)


REVIEW_ACTIONS = {
    "approve": (services.registration_approve, "{ref} is approved and protected."),
    "reject": (services.registration_reject, "{ref} is rejected."),
    "request_info": (services.registration_request_info, "More information requested for {ref}."),
    "escalate": (services.registration_escalate, "{ref} is escalated to the regional director."),
}


@staff_required
@require_POST
def registration_review_action(request, pk, action):
    registration = _registration_for(request, pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        return _form_errors(request, registration, form)
    reason, note = form.cleaned_data["reason"], form.cleaned_data["internal_note"]
    if action in REVIEW_ACTIONS:
        service, success = REVIEW_ACTIONS[action]
        return _run(
            request,
            registration,
            lambda: service(registration=registration, actor=request.user, reason=reason, internal_note=note),
            success,
        )
    if action in ("award", "refuse"):
        return _run(
            request,
            registration,
            lambda: services.registration_escalation_decide(
                registration=registration,
                actor=request.user,
                award=action == "award",
                reason=reason,
                internal_note=note,
            ),
            "{ref}: decision recorded.",
        )
    raise Http404("Not found")


@staff_required
@require_POST
def extension_decide(request, pk, decision):
    extension = get_object_or_404(
        ExtensionRequest.objects.filter(registration__in=Registration.objects.visible_to(request.user)), pk=pk
    )
    registration = extension.registration
    text = DecisionTextForm(request.POST)
    if not text.is_valid():
        return _form_errors(request, registration, text)
    reason = text.cleaned_data["reason"]
    if decision == "approve":
        call = lambda: services.extension_approve(request=extension, actor=request.user, reason=reason)  # noqa: E731
    elif decision == "decline":
        call = lambda: services.extension_decline(request=extension, actor=request.user, reason=reason)  # noqa: E731
    else:
        raise Http404("Not found")
    return _run(
        request, registration, call, "Extension of {ref}: " + ("approved." if decision == "approve" else "declined.")
    )


CONFLICT_ACTIONS = {
    "earliest": (
        lambda r, user, note: conflicts.conflict_award_earliest(registration=r, actor=user, note=note),
        "{ref} is rejected: the earlier registration keeps the customer.",
    ),
    "escalate": (
        lambda r, user, note: conflicts.conflict_escalate(registration=r, actor=user, note=note),
        "{ref} is escalated to the regional director, who decides in the admin.",
    ),
}


@staff_required
@require_POST
def conflict_action(request, pk, action):
    """The reviewer's decisions on a conflict, from the later registration's page."""
    registration = _registration_for(request, pk)
    text = DecisionTextForm(request.POST)
    if not text.is_valid():
        return _form_errors(request, registration, text)
    note = text.cleaned_data["note"]
    if action == "dismiss":
        raw = request.POST.get("conflict", "")
        conflict = get_object_or_404(
            Conflict, pk=int(raw) if raw.isdecimal() and len(raw) < 18 else 0, registration=registration
        )
        return _run(
            request,
            registration,
            lambda: conflicts.conflict_dismiss(conflict=conflict, actor=request.user, note=note),
            "Marked as not the same customer: this pair will not be flagged again.",
        )
    if action not in CONFLICT_ACTIONS:
        raise Http404("Not found")
    call, success = CONFLICT_ACTIONS[action]
    return _run(request, registration, lambda: call(registration, request.user, note), success)
