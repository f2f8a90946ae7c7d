from django.urls import path

from tiers import views

app_name = "tiers"

urlpatterns = [
    path("tier/", views.my_tier, name="my_tier"),
    path("tier/badge.svg", views.my_badge, name="my_badge"),
    path("dealers/<int:pk>/tier/", views.dealer_tier, name="dealer_tier"),
    path("dealers/<int:pk>/tier/badge.svg", views.dealer_badge, name="dealer_badge"),
]
