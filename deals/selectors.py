"""Reads about registrations that several pages share."""

from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from deals.models import Registration

Status = Registration.Status


def queue_summary(user) -> dict:
    now = timezone.now()
    return Registration.objects.review_queue_for(user).aggregate(
        waiting=Count("pk", filter=Q(status=Status.SUBMITTED)),
        overdue=Count("pk", filter=Q(status=Status.SUBMITTED, review_due_at__lte=now)),
        escalated=Count("pk", filter=Q(status=Status.ESCALATED)),
    )


def dealer_summary(organisation) -> dict:
    today = timezone.localdate()
    return Registration.objects.filter(organisation=organisation).aggregate(
        protected=Count("pk", filter=Q(status=Status.APPROVED)),
        waiting=Count("pk", filter=Q(status__in=(Status.SUBMITTED, Status.ESCALATED))),
        info=Count("pk", filter=Q(status=Status.INFO_REQUESTED)),
        expiring=Count(
            "pk",
            filter=Q(
                status=Status.APPROVED, protected_until__gte=today, protected_until__lte=today + timedelta(days=14)
            ),
        ),
    )
