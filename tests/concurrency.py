"""Run one job in several threads at the same moment, as two Celery workers would."""

from __future__ import annotations

import threading

from django.db import connection


def at_once(job, n: int = 2) -> tuple[list, list]:
    """Start `n` threads that call `job()` together (a barrier), each on its own database
    connection. Returns the results and the exceptions, for the test's thread to check."""
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker():
        try:
            barrier.wait(timeout=10)
            results.append(job())
        except Exception as exc:  # reported to the caller, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors
