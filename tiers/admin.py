"""The tier programme in the admin: the sales import, tiers, the programme's weights and targets,
certifications and customer satisfaction. (Evaluations, standings and tier changes are registered
with the evaluation.)"""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from import_export.admin import ImportMixin

from dealers.models import Membership, Organisation
from tiers.imports import SaleImportResource, SalesCSV, summary_text
from tiers.models import Certification, CertificationHolding, Sale, SatisfactionScore, Tier, TierProgramme


class ScopedByOrganisation:
    """Staff who are not channel admins see the records of the dealers they see in the portal."""

    organisation_field = "organisation"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(**{f"{self.organisation_field}__in": Organisation.objects.visible_to(request.user)})
        )


class LinkedFilter(admin.SimpleListFilter):
    title = "linked to a registration"
    parameter_name = "linked"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(registration__isnull=self.value() == "no")
        return queryset


@admin.register(Sale)
class SaleAdmin(ImportMixin, admin.ModelAdmin):
    """Read-only: a sale is the ERP's record. It arrives through the import (here, or the nightly
    `import_sales` command); a correction arrives as a new line, e.g. a credit note."""

    list_display = [
        "erp_line_id",
        "sold_on",
        "reseller",
        "distributor",
        "customer_name",
        "customer_country",
        "product_line",
        "amount",
        "registration",
        "registered_before_sale",
    ]
    list_filter = [
        "reseller__region",
        "product_line",
        LinkedFilter,
        "registered_before_sale",
    ]
    date_hierarchy = "sold_on"
    search_fields = [
        "erp_line_id",
        "customer_name",
        "customer_vat",
        "reseller__name",
        "reseller__vat_number",
        "distributor__name",
        "registration_reference",
        "registration__reference",
    ]
    list_select_related = ["reseller", "distributor", "product_line", "registration"]
    resource_classes = [SaleImportResource]
    import_formats = [SalesCSV]

    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(request.user)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Sale._meta.fields]

    def has_add_permission(self, request):
        return False  # sales come from the ERP: import them

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_import_permission(self, request):
        return request.user.is_channel_admin

    def import_action(self, request, **kwargs):
        response = super().import_action(request, **kwargs)
        context = getattr(response, "context_data", None) or {}
        result = context.get("result")
        if result is not None and "confirm_form" in context:
            messages.info(
                request, "Nothing is saved until you confirm. " + summary_text(result.sales_summary, preview=True)
            )
        return response

    def process_result(self, result, request):
        # The confirmed import runs again on the current database; if a row no longer passes
        # (a dealer or product line changed since the preview, or the same lines were imported
        # by the nightly run at that very moment), the resource has rolled everything back, and
        # the import-export default would still report success.
        if result.has_errors() or result.has_validation_errors():
            self.message_user(
                request,
                "Nothing was imported: the file no longer passes the checks (the portal changed since the "
                "preview). Upload it again to see which rows.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:tiers_sale_import"))
        return super().process_result(result, request)

    def add_success_message(self, result, request):
        messages.success(request, summary_text(result.sales_summary))


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "rank",
        "base_margin_percent",
        "registered_extra_margin_percent",
        "open_registration_cap",
        "min_total",
        "min_certifications",
        "distribution_share",
    ]
    ordering = ["rank"]
    fieldsets = (
        (None, {"fields": ("name", "rank")}),
        (
            "Benefits",
            {
                "fields": (
                    "base_margin_percent",
                    "registered_extra_margin_percent",
                    "co_marketing_budget",
                    "dedicated_partner_manager",
                    "early_access",
                    "premium_support",
                    "open_registration_cap",
                )
            },
        ),
        ("Qualifying", {"fields": ("min_total", "min_certifications", "distribution_share")}),
    )


@admin.register(TierProgramme)
class TierProgrammeAdmin(admin.ModelAdmin):
    """One record; its clean() refuses weights that do not add up to 100 (shown on the form)."""

    fieldsets = (
        (None, {"fields": ("mode", "grace_days")}),
        (
            "Weights (%, adding up to 100)",
            {
                "fields": (
                    "revenue_weight",
                    "growth_weight",
                    "compliance_weight",
                    "certifications_weight",
                    "satisfaction_weight",
                )
            },
        ),
        (
            "Targets (a criterion scores 100 at its target)",
            {
                "fields": (
                    "revenue_target",
                    "growth_target",
                    "compliance_target",
                    "certifications_target",
                    "satisfaction_target",
                )
            },
        ),
        (
            "Dealers flagged for attention",
            {
                "fields": (
                    "attention_registrations_percent",
                    "attention_close_ratio",
                    "attention_min_closed",
                    "attention_inactive_days",
                )
            },
        ),
    )

    def has_add_permission(self, request):
        return not TierProgramme.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        return redirect("admin:tiers_tierprogramme_change", TierProgramme.load().pk)


@admin.register(Certification)
class CertificationAdmin(admin.ModelAdmin):
    list_display = ["name", "code"]
    search_fields = ["name", "code"]
    prepopulated_fields = {"code": ["name"]}


class CertificationHoldingForm(forms.ModelForm):
    class Meta:
        model = CertificationHolding
        fields = ["organisation", "person", "certification", "valid_until"]

    def clean(self):
        cleaned = super().clean()
        organisation, person = cleaned.get("organisation"), cleaned.get("person")
        if organisation and person:
            member = Membership.objects.filter(user=person, organisation=organisation, deactivated_at__isnull=True)
            if not member.exists():
                self.add_error("person", f"{person} is not an active member of {organisation}.")
        return cleaned


class CurrentFilter(admin.SimpleListFilter):
    title = "valid"
    parameter_name = "valid"

    def lookups(self, request, model_admin):
        return [("yes", "Valid today"), ("no", "Expired")]

    def queryset(self, request, queryset):
        today = timezone.localdate()
        if self.value() == "yes":
            return queryset.filter(valid_until__gte=today)
        if self.value() == "no":
            return queryset.filter(valid_until__lt=today)
        return queryset


@admin.register(CertificationHolding)
class CertificationHoldingAdmin(ScopedByOrganisation, admin.ModelAdmin):
    form = CertificationHoldingForm
    list_display = ["person", "organisation", "certification", "valid_until", "is_valid"]
    list_filter = [CurrentFilter, "certification", "organisation__region"]
    search_fields = [
        "person__email",
        "person__first_name",
        "person__last_name",
        "organisation__name",
        "certification__name",
        "certification__code",
    ]
    list_select_related = ["person", "organisation", "certification"]
    raw_id_fields = ["organisation", "person"]
    date_hierarchy = "valid_until"

    @admin.display(boolean=True, description="Valid today")
    def is_valid(self, obj):
        return obj.valid_until >= timezone.localdate()


@admin.register(SatisfactionScore)
class SatisfactionScoreAdmin(ScopedByOrganisation, admin.ModelAdmin):
    list_display = ["organisation", "score", "recorded_on", "sale", "registration", "recorded_by"]
    list_filter = ["score", "organisation__region"]
    search_fields = ["organisation__name", "sale__erp_line_id", "registration__reference"]
    list_select_related = ["organisation", "sale", "registration", "recorded_by"]
    raw_id_fields = ["organisation", "sale", "registration"]
    readonly_fields = ["recorded_by"]
    date_hierarchy = "recorded_on"

    def save_model(self, request, obj, form, change):
        if not change:
            obj.recorded_by = request.user
        super().save_model(request, obj, form, change)
