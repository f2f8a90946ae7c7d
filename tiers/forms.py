"""The channel admin's override of a dealer's tier."""

from datetime import timedelta

from django import forms
from django.utils import timezone

from tiers.models import Tier
from tiers.services import OVERRIDE_MAX_DAYS


class OverrideForm(forms.Form):
    tier = forms.ModelChoiceField(queryset=Tier.objects.order_by("rank"), empty_label=None)
    until = forms.DateField(
        label="Until (inclusive)",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The dealer holds this tier up to and including this date; the next night its scores count again.",
    )
    reason = forms.CharField(
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The dealer admin and the partner manager read it in the notification and the tier history.",
    )

    def clean_until(self):
        until = self.cleaned_data["until"]
        today = timezone.localdate()
        if until < today:
            raise forms.ValidationError("The end date has passed: choose today or a later date.")
        if until > today + timedelta(days=OVERRIDE_MAX_DAYS):
            raise forms.ValidationError(f"An override lasts at most {OVERRIDE_MAX_DAYS // 365} years.")
        return until

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give the reason for the override.")
        return reason


class OverrideEndForm(forms.Form):
    reason = forms.CharField(
        label="Why (optional)", max_length=200, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class SatisfactionForm(forms.Form):
    score = forms.TypedChoiceField(
        label="Customer satisfaction",
        coerce=int,
        choices=[(5, "5 — very satisfied"), (4, "4"), (3, "3"), (2, "2"), (1, "1 — very dissatisfied")],
        widget=forms.RadioSelect,
        help_text="As the customer told you (a survey or a call). It counts in the dealer's tier score.",
    )
