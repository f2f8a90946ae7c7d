from celery import shared_task

from tiers import rollup, services


@shared_task(ignore_result=True)
def tiers_recompute() -> None:
    services.tiers_recompute()


@shared_task(ignore_result=True)
def dashboards_rollup() -> None:
    rollup.rollup_build()
    rollup.rollup_warm()
