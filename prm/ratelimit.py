"""A small per-hour rate limit counted in the cache (CACHES: Redis in production, files under
`make run`), shared by every web process.

Fixed windows of one clock hour: simple, one cache increment per request, and the refusal can say
exactly when the next window opens. At a window's edge a burst of up to twice the limit passes,
which is fine for limits meant to stop floods, not to meter.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)

HOUR = 3600


@dataclass(frozen=True)
class Refusal:
    limit: int
    retry_at: datetime


def rate_limit_consume(*, scope: str, key: str | int, per_hour: int) -> Refusal | None:
    """Count one request of `key` in `scope`; a Refusal once it is over `per_hour` (0: no limit).

    A cache that does not answer lets the request through: a rate limit is no reason to refuse
    a dealer's registration while Redis restarts.
    """
    if per_hour <= 0:
        return None
    window = int(timezone.now().timestamp()) // HOUR
    cache_key = f"ratelimit:{scope}:{key}:{window}"
    try:
        cache.add(cache_key, 0, timeout=HOUR + 60)
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr: this is the window's first request
        cache.set(cache_key, 1, timeout=HOUR + 60)
        count = 1
    except Exception:
        logger.warning("rate limit %s not checked: the cache did not answer", scope, exc_info=True)
        return None
    if count <= per_hour:
        return None
    next_window = datetime.fromtimestamp((window + 1) * HOUR, tz=timezone.get_current_timezone())
    return Refusal(limit=per_hour, retry_at=next_window)
