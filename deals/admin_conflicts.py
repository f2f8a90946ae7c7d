"""The regional director's escalation desk in the admin.

The changelist of conflicts opens on the escalated ones. A conflict's page shows the competing
registrations side by side — the later registration and every registration it has an escalated
conflict with — and, for whoever may decide it, a form that calls deals.conflicts.conflict_decide.
Nothing else changes a conflict here: every field is read-only, there is no add and no delete.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html

from dealers.models import Organisation
from deals import conflicts as conflict_services
from deals import services
from deals.models import Conflict, Registration, RegistrationEvent, RegistrationLine

ESCALATED = Conflict.Status.ESCALATED


class ConflictStatusFilter(admin.SimpleListFilter):
    """Status, opening on the escalated conflicts (the regional director's list)."""

    title = "status"
    parameter_name = "status"
    default = ESCALATED.value
    ALL = "all"

    def lookups(self, request, model_admin):
        return [*Conflict.Status.choices, (self.ALL, "All")]

    def current(self) -> str:
        return self.value() or self.default

    def choices(self, changelist):
        # No "All" link of the framework's own: it would drop the parameter, i.e. the default.
        for value, label in self.lookup_choices:
            yield {
                "selected": self.current() == str(value),
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        value = self.current()
        if value == self.ALL:
            return queryset
        if value not in Conflict.Status.values:
            return queryset.none()
        return queryset.filter(status=value)


class DecisionForm(forms.Form):
    CHOOSE = "Choose the registration that keeps the customer."
    winner = forms.IntegerField(
        min_value=1, error_messages={"required": CHOOSE, "invalid": CHOOSE, "min_value": CHOOSE}
    )
    customer_chose = forms.BooleanField(required=False)
    note = forms.CharField(required=False, max_length=2000)


@admin.register(Conflict)
class ConflictAdmin(admin.ModelAdmin):
    list_display = [
        "later_reference",
        "later_dealer",
        "other_reference",
        "other_dealer",
        "score",
        "status",
        "created",
    ]
    list_display_links = ["later_reference"]
    list_filter = [ConflictStatusFilter, "kind"]
    list_select_related = ["registration__organisation", "other__organisation"]
    search_fields = [
        "registration__reference",
        "other__reference",
        "registration__organisation__name",
        "other__organisation__name",
        "registration__customer__name",
        "other__customer__name",
    ]
    ordering = ["created_at", "pk"]  # the longest waiting first
    show_full_result_count = False

    # --- scope and permissions -----------------------------------------------------------------

    def get_queryset(self, request):
        """Channel admin: all; regional director: conflicts of the dealers in their regions;
        partner manager: their own dealers' conflicts (they only have the view permission);
        anyone else: nothing. A conflict belongs to the later registration's dealer."""
        queryset = super().get_queryset(request)
        user = request.user
        if not (user.is_authenticated and user.is_vendor_staff):
            return queryset.none()
        return queryset.filter(registration__organisation__in=Organisation.objects.visible_to(user))

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Conflict._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def can_decide(self, request, conflict: Conflict) -> bool:
        return (
            conflict.status == ESCALATED
            and self.has_change_permission(request, conflict)
            and services.is_director_of(request.user, conflict.registration.organisation_id)
        )

    # --- the list ------------------------------------------------------------------------------

    @admin.display(description="Later registration", ordering="registration__reference")
    def later_reference(self, obj):
        return obj.registration.reference

    @admin.display(description="Dealer", ordering="registration__organisation__name")
    def later_dealer(self, obj):
        return obj.registration.organisation.name

    @admin.display(description="Competes with", ordering="other__reference")
    def other_reference(self, obj):
        return obj.other.reference

    @admin.display(description="Its dealer", ordering="other__organisation__name")
    def other_dealer(self, obj):
        return obj.other.organisation.name

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return dateformat.format(timezone.localtime(obj.created_at), "j M Y, H:i")

    def changelist_view(self, request, extra_context=None):
        status = request.GET.get(ConflictStatusFilter.parameter_name) or ConflictStatusFilter.default
        title = "Escalations" if status == ESCALATED else "Conflicts"
        return super().changelist_view(request, {"title": title, "subtitle": None, **(extra_context or {})})

    # --- the side-by-side page -----------------------------------------------------------------

    def get_urls(self):
        decide = self.admin_site.admin_view(self.decide_view)
        return [path("<path:object_id>/decide/", decide, name="deals_conflict_decide"), *super().get_urls()]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST":  # nothing to save here: decisions go through decide_view
            return HttpResponseNotAllowed(["GET"])
        return super().changeform_view(request, object_id, form_url, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        conflict = self.get_object(request, unquote(object_id))
        extra_context = dict(extra_context or {})
        if conflict is not None and self.has_view_permission(request, conflict):
            extra_context.update(self.side_by_side(request, conflict))
            verb = "Decide" if extra_context["can_decide"] else "View"
            extra_context.setdefault("title", f"{verb} the conflict of {conflict.registration.reference}")
            extra_context.setdefault("subtitle", None)
        return super().change_view(request, object_id, form_url, extra_context)

    def side_by_side(self, request, conflict: Conflict) -> dict:
        later = conflict.registration
        siblings = Conflict.objects.filter(registration=later, kind=conflict.kind, status=conflict.status)
        if conflict.status in (Conflict.Status.RESOLVED, Conflict.Status.DISMISSED):
            siblings = siblings.filter(decided_at=conflict.decided_at)  # decided together
        siblings = list(siblings.order_by("-score", "pk"))
        by_other = {c.other_id: c for c in siblings}
        ids = [later.pk, *by_other]
        registrations = (
            Registration.objects.filter(pk__in=ids)
            .select_related("organisation__region", "organisation__partner_manager", "customer", "decided_by")
            .prefetch_related(
                Prefetch("lines", queryset=RegistrationLine.objects.select_related("product__line")),
                Prefetch("events", queryset=RegistrationEvent.objects.select_related("actor")),
                "flags",
            )
            .order_by("first_submitted_at", "pk")
        )
        columns = [
            {"registration": r, "is_later": r.pk == later.pk, "match": by_other.get(r.pk)} for r in registrations
        ]
        suggested = columns[0]["registration"] if columns else None
        escalation = later.events.filter(action="escalate").select_related("actor").order_by("created_at", "pk").last()
        return {
            "columns": columns,
            "later": later,
            "suggested": suggested,
            "escalation": escalation,
            "can_decide": self.can_decide(request, conflict),
            "decide_url": reverse("admin:deals_conflict_decide", args=[conflict.pk]),
            "is_director": services.is_director_of(request.user, later.organisation_id),
        }

    # --- the decision --------------------------------------------------------------------------

    def decide_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conflict = self.get_object(request, unquote(object_id))
        if conflict is None:
            raise Http404("No such conflict.")
        if not self.has_change_permission(request, conflict):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:deals_conflict_change", args=[conflict.pk]))
        form = DecisionForm(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                self.message_user(request, " ".join(errors), messages.ERROR)
            return back
        winner = Registration.objects.filter(pk=form.cleaned_data["winner"]).first()
        if winner is None:
            self.message_user(request, "The winner must be one of the competing registrations.", messages.ERROR)
            return back
        decided = list(
            Conflict.objects.filter(registration=conflict.registration, status=ESCALATED, kind=conflict.kind)
        )
        try:
            conflict_services.conflict_decide(
                registration=conflict.registration,
                winner=winner,
                actor=request.user,
                customer_chose=form.cleaned_data["customer_chose"],
                note=form.cleaned_data["note"],
            )
        except services.RegistrationError as exc:  # NotAllowed included
            self.message_user(request, str(exc), messages.ERROR)
            return back
        how = "the customer chose it" if form.cleaned_data["customer_chose"] else "decided by you"
        message = f"Decided: {winner.reference} ({winner.organisation.name}) keeps the customer ({how})."
        for each in decided:
            self.log_change(request, each, message)
        self.message_user(
            request,
            format_html("{} Every dealer involved has been told in neutral words.", message),
            messages.SUCCESS,
        )
        return back
