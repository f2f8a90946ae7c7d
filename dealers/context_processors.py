def portal(request):
    """Navigation facts every page needs, computed once per request."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "nav_is_staff": user.is_vendor_staff,
        "nav_organisation": user.organisation,
        "nav_has_dashboard": user.is_vendor_staff
        and (user.is_partner_manager or user.is_regional_director or user.is_channel_admin),
    }
