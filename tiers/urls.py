from django.urls import path

from tiers import dashboards, views

app_name = "tiers"

urlpatterns = [
    path("dashboard/", dashboards.dashboard, name="dashboard"),
    path("dashboard/dealer/", dashboards.dealer_dashboard, name="dealer_dashboard"),
    path("dashboard/team/", dashboards.team_dashboard, name="team_dashboard"),
    path("dashboard/region/", dashboards.region_dashboard, name="region_dashboard"),
    path("dashboard/figures/registrations/", dashboards.figures_registrations, name="figures_registrations"),
    path("dashboard/figures/sales/", dashboards.figures_sales, name="figures_sales"),
    path("tier/", views.my_tier, name="my_tier"),
    path("tier/badge.svg", views.my_badge, name="my_badge"),
    path("dealers/<int:pk>/tier/", views.dealer_tier, name="dealer_tier"),
    path("dealers/<int:pk>/tier/override/", views.dealer_override, name="dealer_override"),
    path("dealers/<int:pk>/tier/override/end/", views.dealer_override_end, name="dealer_override_end"),
    path("registrations/<int:pk>/satisfaction/", views.registration_satisfaction, name="registration_satisfaction"),
    path("dealers/<int:pk>/tier/badge.svg", views.dealer_badge, name="dealer_badge"),
]
