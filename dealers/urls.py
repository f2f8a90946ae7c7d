from django.urls import path

from dealers import plan_views, views

app_name = "dealers"

urlpatterns = [
    path("organisation/", views.my_organisation, name="my_organisation"),
    path("organisations/<int:pk>/invite/", views.organisation_invite, name="organisation_invite"),
    path("people/<int:pk>/deactivate/", views.membership_deactivate, name="membership_deactivate"),
    path("people/<int:pk>/reactivate/", views.membership_reactivate, name="membership_reactivate"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("dealers/", views.dealer_list, name="dealer_list"),
    path("dealers/reassign/", views.reassign_partner_manager, name="reassign_partner_manager"),
    path("dealers/<int:pk>/", views.dealer_detail, name="dealer_detail"),
    path("dealers/<int:pk>/improvement-plan/", plan_views.plan_open, name="plan_open"),
    path("improvement-plans/<int:pk>/review/", plan_views.plan_review, name="plan_review"),
]
