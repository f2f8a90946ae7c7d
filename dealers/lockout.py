"""The log-in lock-out (django-axes) fitted to allauth's log-in.

Axes counts failed log-ins per email address and client address (settings: AXES_*). allauth
passes the email as `email`, and the client address is the one allauth's rate limits use, so both
agree behind a proxy. The two-factor step counts too: a wrong code is a failed log-in, and a
locked-out person cannot finish the step, so knowing the password buys no extra guesses.
"""

from datetime import timedelta

from allauth.account.adapter import get_adapter
from allauth.core import context
from allauth.mfa.base.forms import AuthenticateForm
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_lockout_message
from axes.utils import reset
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import render
from django.utils import timezone


def username_of(request, credentials) -> str | None:
    """The email address tried, whichever form sent it, in one spelling."""
    login = (credentials or {}).get("email") or (credentials or {}).get("username")
    if not login and request is not None and request.method == "POST":
        login = request.POST.get("login")
    return login.strip().lower() if login else None


def client_ip(request) -> str | None:
    """The client's address as allauth sees it (PRM_TRUSTED_PROXY_COUNT)."""
    try:
        return get_adapter(request).get_client_ip(request)
    except PermissionDenied:
        return request.META.get("REMOTE_ADDR")


def is_locked_out(request, credentials: dict) -> bool:
    return settings.AXES_ENABLED and not AxesProxyHandler.is_allowed(request, credentials)


def refuse(request) -> ValidationError:
    """Mark the request so that AxesMiddleware answers with the lock-out page."""
    request.axes_locked_out = True
    return ValidationError(get_lockout_message())


def lockout_reset(*, email: str) -> int:
    """Lift the lock-out of one email address, from every client address."""
    return reset(username=email.strip().lower())


def lockout_response(request, original_response, credentials):
    """The page a locked-out person sees (AXES_LOCKOUT_CALLABLE), with 429 Too Many Requests."""
    cool_off = get_cool_off(request) or timedelta(0)
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": int(cool_off.total_seconds() // 60),
        # Counted from the last failure, which is this request or an earlier one: an upper bound.
        "until": timezone.localtime() + cool_off,
    }
    return render(request, "account/locked_out.html", context, status=429)


class LockoutAwareAuthenticateForm(AuthenticateForm):
    """allauth's two-factor code form (MFA_FORMS["authenticate"]) under the same lock-out."""

    def clean_code(self):
        request = context.request
        credentials = {"email": self.user.email}
        if is_locked_out(request, credentials):
            raise refuse(request)
        try:
            return super().clean_code()
        except ValidationError:
            user_login_failed.send(sender=__name__, credentials=credentials, request=request)
            raise
