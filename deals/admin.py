from django.contrib import admin

from deals.models import (
    Customer,
    ExtensionRequest,
    Holiday,
    Product,
    ProductLine,
    ProgrammeSettings,
    Registration,
    RegistrationEvent,
    RegistrationLine,
)


@admin.register(ProgrammeSettings)
class ProgrammeSettingsAdmin(admin.ModelAdmin):
    fieldsets = (
        ("Review", {"fields": ("review_sla_hours", "reminder_hours")}),
        (
            "Protection",
            {
                "fields": (
                    "default_protection_days",
                    "extension_days",
                    "max_extensions",
                    "first_expiry_warning_days",
                    "second_expiry_warning_days",
                    "stale_after_days",
                )
            },
        ),
        (
            "Programme",
            {
                "fields": (
                    "default_open_registration_cap",
                    "base_margin_percent",
                    "registered_extra_margin_percent",
                    "enterprise_value_threshold",
                )
            },
        ),
        (
            "Forecast",
            {
                "description": "The share of a protected registration's value the forecast counts, by decision stage.",
                "fields": (
                    "forecast_weight_early",
                    "forecast_weight_mid",
                    "forecast_weight_late",
                    "forecast_weight_blank",
                ),
            },
        ),
        (
            "Personal data",
            {
                "description": "How long a closed registration keeps its customer contact (README: Personal data).",
                "fields": ("contact_retention_months",),
            },
        ),
    )

    def has_add_permission(self, request):
        return not ProgrammeSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        from django.shortcuts import redirect

        return redirect("admin:deals_programmesettings_change", ProgrammeSettings.load().pk)


@admin.register(Holiday)
class HolidayAdmin(admin.ModelAdmin):
    list_display = ["date", "name"]
    date_hierarchy = "date"


class ProductInline(admin.TabularInline):
    model = Product
    extra = 0


@admin.register(ProductLine)
class ProductLineAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "protection_days", "direct_only"]
    list_filter = ["direct_only"]
    search_fields = ["name", "code"]
    inlines = [ProductInline]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "sku", "line", "list_price", "active"]
    list_filter = ["line", "active"]
    search_fields = ["name", "sku"]
    list_select_related = ["line"]


class ScopedByOrganisation:
    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(request.user)


@admin.register(Customer)
class CustomerAdmin(ScopedByOrganisation, admin.ModelAdmin):
    list_display = ["name", "city", "postcode", "country", "organisation", "vat_number"]
    list_filter = ["country"]
    search_fields = ["name", "city", "vat_number", "company_number", "website"]
    list_select_related = ["organisation"]
    raw_id_fields = ["organisation"]


class LineInline(admin.TabularInline):
    model = RegistrationLine
    extra = 0
    can_delete = False
    readonly_fields = ["product", "quantity", "value"]

    def has_add_permission(self, request, obj=None):
        return False


class EventInline(admin.TabularInline):
    model = RegistrationEvent
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "actor", "action", "from_status", "to_status", "reason", "internal_note"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Registration)
class RegistrationAdmin(admin.ModelAdmin):
    """Read-only here: every change goes through the portal's services (and their history)."""

    list_display = [
        "reference",
        "organisation",
        "customer",
        "status",
        "expected_value",
        "first_submitted_at",
        "review_due_at",
        "protected_until",
    ]
    list_filter = ["status", "decision_stage", "organisation__region"]
    search_fields = ["reference", "customer__name", "organisation__name"]
    list_select_related = ["organisation", "customer"]
    date_hierarchy = "first_submitted_at"
    inlines = [LineInline, EventInline]

    def get_queryset(self, request):
        return super().get_queryset(request).of_dealers_visible_to(request.user)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Registration._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ExtensionRequest)
class ExtensionRequestAdmin(admin.ModelAdmin):
    list_display = ["registration", "status", "requested_by", "requested_at", "decided_by", "decided_at"]
    list_filter = ["status"]
    list_select_related = ["registration", "requested_by", "decided_by"]

    def get_queryset(self, request):
        from deals.models import Registration as R

        # As RegistrationAdmin: the dealers one looks after; a registration seen through a conflict is not listed.
        return super().get_queryset(request).filter(registration__in=R.objects.of_dealers_visible_to(request.user))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


from deals import admin_conflicts, admin_lookup, admin_privacy  # noqa: E402,F401
