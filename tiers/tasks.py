from celery import shared_task

from tiers import services


@shared_task(ignore_result=True)
def tiers_recompute() -> None:
    services.tiers_recompute()
