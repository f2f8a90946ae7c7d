from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpResponseRedirect
from django.urls import reverse
from import_export.admin import ImportMixin
from import_export.formats.base_formats import CSV

from dealers import services
from dealers.imports import OrganisationImportResource
from dealers.models import (
    ImprovementPlan,
    Invitation,
    Membership,
    Organisation,
    OrganisationEvent,
    Region,
    Specialisation,
    Territory,
    User,
)


class ScopedAdminMixin:
    """Staff who are not channel admins see in the admin only what they see in the portal."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset.visible_to(request.user)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_active", "is_staff", "roles", "home_region", "last_login"]
    list_filter = ["is_active", "is_staff", "groups", "home_region"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Person", {"fields": ("first_name", "last_name", "home_region")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "first_name", "last_name", "password1", "password2")}),
    )
    readonly_fields = ["last_login", "date_joined"]

    @admin.display(description="Roles")
    def roles(self, obj):
        return ", ".join(sorted(g.name for g in obj.groups.all())) or "—"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("home_region").prefetch_related("groups")


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "regional_director", "dealer_count"]
    search_fields = ["name", "code"]
    autocomplete_fields = []

    @admin.display(description="Organisations")
    def dealer_count(self, obj):
        return obj.organisations.count()

    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(request.user).select_related("regional_director")


@admin.register(Specialisation)
class SpecialisationAdmin(admin.ModelAdmin):
    search_fields = ["name"]


class TerritoryInline(admin.TabularInline):
    model = Territory
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "created_at", "deactivated_at"]
    readonly_fields = ["user", "created_at", "deactivated_at"]
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # people join through invitations


def _status_action(status):
    label = Organisation.Status(status).label

    @admin.action(description=f"Set status to “{label}”", permissions=["change"])
    def action(modeladmin, request, queryset):
        for organisation in queryset:
            services.organisation_set_status(organisation=organisation, status=status, actor=request.user)
        modeladmin.message_user(request, f"{queryset.count()} organisation(s) set to {label}.", messages.SUCCESS)

    action.__name__ = f"set_status_{status}"
    return action


@admin.register(Organisation)
class OrganisationAdmin(ScopedAdminMixin, ImportMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "status", "city", "country", "region", "partner_manager", "joined_on"]
    list_filter = ["status", "kind", "region", "country", ("partner_manager", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "city", "vat_number", "company_number", "website"]
    list_select_related = ["region", "partner_manager"]
    date_hierarchy = "joined_on"
    readonly_fields = ["status", "created_at"]
    filter_horizontal = ["distributors", "specialisations"]
    inlines = [TerritoryInline, MembershipInline]
    actions = [_status_action(s) for s in Organisation.Status.values]
    fieldsets = (
        (None, {"fields": ("name", "kind", "status", "region", "partner_manager", "joined_on")}),
        ("Address and identity", {"fields": ("city", "country", "website", "vat_number", "company_number")}),
        ("Channel", {"fields": ("distributors", "specialisations")}),
        ("Record", {"fields": ("created_at",)}),
    )
    resource_classes = [OrganisationImportResource]
    import_formats = [CSV]

    def has_import_permission(self, request):
        return request.user.is_channel_admin

    def process_result(self, result, request):
        # The confirmed import runs again on the current database; if a row no longer passes
        # (someone signed up or added the dealer since the preview), the resource has rolled
        # everything back, and the import-export default would still report success.
        if result.has_errors() or result.has_validation_errors():
            self.message_user(
                request,
                "Nothing was imported: the file no longer passes the checks (the portal changed since the "
                "preview). Upload it again to see which rows.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:dealers_organisation_import"))
        return super().process_result(result, request)

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_channel_admin:
            # Who looks after a dealer, and where it sits, is the channel admin's call.
            fields += ["partner_manager", "region", "kind", "distributors"]
        return fields

    def save_model(self, request, obj, form, change):
        old_manager = None
        if change and "partner_manager" in form.changed_data:
            old_manager = Organisation.objects.get(pk=obj.pk).partner_manager
        super().save_model(request, obj, form, change)
        if change and "partner_manager" in form.changed_data:
            services.organisation_record_partner_manager_change(
                organisation=obj, old=old_manager, new=obj.partner_manager, actor=request.user
            )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "region" and not request.user.is_channel_admin:
            kwargs["queryset"] = Region.objects.filter(
                organisations__in=Organisation.objects.visible_to(request.user)
            ).distinct()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Membership)
class MembershipAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["user", "organisation", "role", "created_at", "deactivated_at"]
    list_filter = ["role", ("deactivated_at", admin.EmptyFieldListFilter), "organisation__region"]
    search_fields = ["user__email", "user__first_name", "user__last_name", "organisation__name"]
    list_select_related = ["user", "organisation"]
    readonly_fields = ["user", "organisation", "created_at", "deactivated_at", "deactivated_by"]
    fields = ["user", "organisation", "role", "created_at", "deactivated_at", "deactivated_by"]

    def has_add_permission(self, request):
        return False  # people join through invitations

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate instead: nothing a person did is deleted


@admin.register(Invitation)
class InvitationAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["email", "organisation", "role", "invited_by", "created_at", "expires_at", "accepted_at"]
    list_filter = ["role", ("accepted_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "organisation__name"]
    list_select_related = ["organisation", "invited_by"]
    readonly_fields = [f.name for f in Invitation._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OrganisationEvent)
class OrganisationEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "organisation", "kind", "description", "actor"]
    list_filter = ["kind"]
    search_fields = ["organisation__name", "description"]
    list_select_related = ["organisation", "actor"]
    readonly_fields = [f.name for f in OrganisationEvent._meta.fields]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(organisation__in=Organisation.objects.visible_to(request.user))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ImprovementPlan)
class ImprovementPlanAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Read only: plans are opened and reviewed on the dealer's page in the portal, where the
    services check the rules, write the history and tell the dealer."""

    list_display = ["organisation", "status", "deadline", "extensions", "opened_by", "opened_at", "reviewed_at"]
    list_filter = ["status", "organisation__region"]
    search_fields = ["organisation__name", "goals", "outcome"]
    list_select_related = ["organisation", "opened_by"]
    date_hierarchy = "deadline"
    readonly_fields = [f.name for f in ImprovementPlan._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
