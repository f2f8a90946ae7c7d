from django.apps import AppConfig


class DealersConfig(AppConfig):
    name = "dealers"
    verbose_name = "Dealers and people"
