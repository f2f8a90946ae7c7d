from allauth.account.adapter import DefaultAccountAdapter

from dealers import lockout


class InvitationOnlyAccountAdapter(DefaultAccountAdapter):
    """Nobody signs up on their own: people join through an invitation (dealers.services)."""

    error_messages = {
        **DefaultAccountAdapter.error_messages,
        # allauth's own limit (5 failures per email in 5 minutes, from any address), and the two-factor step's.
        "too_many_login_attempts": "Too many failed attempts for this account. Wait a few minutes and try "
        "again; if you have forgotten your password, reset it.",
    }

    def is_open_for_signup(self, request) -> bool:
        return False

    def pre_authenticate(self, request, **credentials) -> None:
        # Locked out (django-axes): answer with the lock-out page before allauth's limit, which
        # would say something vaguer, and before any password is checked.
        if lockout.is_locked_out(request, credentials):
            raise lockout.refuse(request)
        super().pre_authenticate(request, **credentials)
