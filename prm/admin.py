from django.contrib import admin

from prm.models import OutboxEmail


@admin.register(OutboxEmail)
class OutboxEmailAdmin(admin.ModelAdmin):
    """What the portal sent, and what it could not send yet (channel admins)."""

    list_display = ["created_at", "to", "subject", "topic", "sent_at", "attempts", "next_attempt_at"]
    list_filter = [("sent_at", admin.EmptyFieldListFilter)]
    search_fields = ["to", "subject", "topic"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in OutboxEmail._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_channel_admin else queryset.none()
