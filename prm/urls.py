from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from dealers.views import home
from prm import views

# The admin's own log-in form would bypass allauth (and so MFA and rate limits): send it there.
admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = "Partner portal administration"
admin.site.site_title = "Partner portal admin"
admin.site.index_title = "Programme administration"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", home, name="home"),
    path("", include("dealers.urls")),
    path("", include("deals.urls")),
    path("", include("tiers.urls")),
]
