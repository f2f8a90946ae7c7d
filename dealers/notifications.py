"""Emails about organisations and people, rendered from templates/emails/."""

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from dealers.models import Invitation


def absolute_url(path: str) -> str:
    return settings.PRM_SITE_URL.rstrip("/") + path


def invitation_email_send(*, invitation_id: int) -> bool:
    from dealers.services import invitation_token

    invitation = Invitation.objects.select_related("organisation", "invited_by").filter(pk=invitation_id).first()
    if invitation is None or invitation.accepted_at is not None or invitation.is_expired():
        return False
    context = {
        "invitation": invitation,
        "url": absolute_url(reverse("dealers:invitation_accept", args=[invitation_token(invitation)])),
        "days": settings.PRM_INVITATION_DAYS,
    }
    subject = render_to_string("emails/invitation_subject.txt", context).strip()
    body = render_to_string("emails/invitation_body.txt", context)
    send_mail(subject, body, None, [invitation.email])
    return True
