from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxEmail(models.Model):
    """An email written in the same transaction as the change it reports.

    A task kicked on commit sends it, and a periodic job retries whatever is left, so a broker or
    mail server outage loses nothing. Sending claims the row with a conditional update first, so
    two workers never send one message twice.
    """

    to = models.EmailField()
    subject = models.CharField(max_length=300)
    body = models.TextField()
    topic = models.CharField(max_length=60, blank=True, help_text="What it is about, e.g. REG-2026-000123.")
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, help_text="Not retried before this moment.")
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = "outbox email"
        indexes = [
            models.Index(fields=["next_attempt_at"], name="outbox_due_idx", condition=Q(sent_at=None)),
            # the emails about one registration (its reference is their topic): deals.privacy redacts them
            models.Index(fields=["topic"], name="outbox_topic_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.to}"
