"""Signal receivers of the dealers app: thin, each hands over to a service."""

from dealers import lockout, services


def on_user_logged_in(sender, request, user, **kwargs) -> None:
    """Every successful log-in (after the second factor, for staff) counts for the log-ins KPI."""
    services.login_record(user=user)


def on_password_reset(sender, request, user, **kwargs) -> None:
    """Whoever can read the mailbox may log in at once: a password reset lifts the lock-out."""
    lockout.lockout_reset(email=user.email)
