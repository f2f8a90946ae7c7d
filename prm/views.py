from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from prm import health


@never_cache
@require_GET
def healthz(request):
    """200 when the database and the broker answer; 503 naming what failed otherwise."""
    checks = {"database": health.database_ok(), "broker": health.broker_ok()}
    ok = all(passed for passed, _ in checks.values())
    body = {"status": "ok" if ok else "unavailable"}
    body.update({name: detail for name, (_, detail) in checks.items()})
    if not ok:
        body["failed"] = [name for name, (passed, _) in checks.items() if not passed]
    return JsonResponse(body, status=200 if ok else 503)
