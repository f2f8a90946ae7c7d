"""The log of erasures on request, read-only, for channel admins (imported by deals.admin).

Erasures are made on the portal's page (deals.privacy_views), never here. The log holds no email
address; searching it for an address hashes what is typed and looks for that hash."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from deals.models import ErasureLog
from deals.privacy import counts_in_order, email_hash


@admin.register(ErasureLog)
class ErasureLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "total", "name_given", "reason"]
    list_select_related = ["actor"]
    date_hierarchy = "created_at"
    search_fields = ["email_hash"]
    search_help_text = "Type an email address to find its erasures (the log keeps only a keyed hash of it)."
    fields = ["created_at", "actor", "reason", "name_given", "counts_table", "total", "email_hash"]
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_channel_admin else queryset.none()

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(email_hash=email_hash(term)), False

    @admin.display(description="records redacted, per kind")
    def counts_table(self, obj: ErasureLog):
        rows = [(label, count) for label, count in counts_in_order(obj.counts) if count]
        if not rows:
            return "Nothing was found."
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}: {}</li>", rows))

    def changelist_view(self, request, extra_context=None):
        extra = {"subtitle": format_html('<a href="{}">Erase a person\'s details</a>', reverse("deals:person_erase"))}
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
