"""Admin for the named accounts and the protection lookup log (imported by deals.admin)."""

from django.contrib import admin

from deals.models import NamedAccount, ProtectionLookup


@admin.register(NamedAccount)
class NamedAccountAdmin(admin.ModelAdmin):
    list_display = ["name", "city", "country", "reserved_for_display", "vat_number", "website", "active"]
    list_filter = ["active", "country", ("reserved_for", admin.EmptyFieldListFilter)]
    search_fields = ["name", "city", "vat_number", "company_number", "website", "reserved_for__name"]
    list_select_related = ["reserved_for"]
    autocomplete_fields = ["reserved_for"]
    fieldsets = (
        (None, {"fields": ("name", "city", "country")}),
        ("How to recognise it", {"fields": ("vat_number", "company_number", "website")}),
        ("Reserved for", {"fields": ("reserved_for", "note", "active")}),
    )

    @admin.display(description="reserved for", ordering="reserved_for__name")
    def reserved_for_display(self, obj: NamedAccount) -> str:
        return obj.reserved_for.name if obj.reserved_for else "Direct team"


@admin.register(ProtectionLookup)
class ProtectionLookupAdmin(admin.ModelAdmin):
    """The log of who looked up which customer: read-only; a channel admin sees everyone's lookups,
    anyone else with access only their own."""

    list_display = ["user", "query", "result_count", "created_at"]
    list_filter = [("created_at", admin.DateFieldListFilter)]
    search_fields = ["query", "user__email", "user__first_name", "user__last_name"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_channel_admin:
            return queryset
        return queryset.filter(user=request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
