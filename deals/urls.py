from django.urls import path

from deals import forecast_views, privacy_views, views
from deals.lookup_views import protection_lookup

app_name = "deals"

urlpatterns = [
    path("registrations/", views.registration_list, name="registration_list"),
    path("registrations/new/", views.registration_create, name="registration_create"),
    path("registrations/<int:pk>/", views.registration_detail, name="registration_detail"),
    path("registrations/<int:pk>/edit/", views.registration_update, name="registration_update"),
    path("registrations/<int:pk>/withdraw/", views.registration_withdraw, name="registration_withdraw"),
    path(
        "registrations/<int:pk>/do/<slug:action>/",
        views.registration_dealer_action,
        name="registration_dealer_action",
    ),
    path(
        "registrations/<int:pk>/review/<slug:action>/",
        views.registration_review_action,
        name="registration_review_action",
    ),
    path("registrations/<int:pk>/conflict/<slug:action>/", views.conflict_action, name="conflict_action"),
    path("extensions/<int:pk>/<slug:decision>/", views.extension_decide, name="extension_decide"),
    path("review/", views.review_queue, name="review_queue"),
    path("review/approve/", views.review_bulk_approve, name="review_bulk_approve"),
    path("lookup/", protection_lookup, name="protection_lookup"),
    path("forecast/", forecast_views.forecast_page, name="forecast"),
    path("forecast.csv", forecast_views.forecast_csv, name="forecast_csv"),
    path("privacy/erase/", privacy_views.person_erase, name="person_erase"),
    path("privacy/erasures/<int:pk>/", privacy_views.erasure_detail, name="erasure_detail"),
]
