from django import forms
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from dealers.models import Membership, StaffRole, User


class InvitationForm(forms.Form):
    email = forms.EmailField(
        label="Email address", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"})
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.DEALER_USER)


class InvitationAcceptForm(forms.Form):
    first_name = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "given-name"}))
    last_name = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "family-name"}))
    password1 = forms.CharField(
        label="Choose a password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 12 characters; not only digits and not a common password.",
    )
    password2 = forms.CharField(
        label="Repeat the password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            candidate = User(
                email=self.email, first_name=data.get("first_name", ""), last_name=data.get("last_name", "")
            )
            try:
                validate_password(p1, candidate)
            except ValidationError as exc:
                self.add_error("password1", exc)
        return data


def partner_managers():
    return User.objects.filter(is_active=True, is_staff=True, groups__name=StaffRole.PARTNER_MANAGER).distinct()


class ReassignPartnerManagerForm(forms.Form):
    from_user = forms.ModelChoiceField(queryset=partner_managers(), label="Move all dealers of")
    to_user = forms.ModelChoiceField(
        queryset=partner_managers(),
        label="To",
        required=False,
        empty_label="Nobody: their regional director looks after them",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from_user"].queryset = partner_managers()
        self.fields["to_user"].queryset = partner_managers()

    def clean(self):
        data = super().clean()
        if data.get("from_user") and data.get("from_user") == data.get("to_user"):
            self.add_error("to_user", "Choose a different partner manager.")
        return data


class ImprovementPlanForm(forms.Form):
    goals = forms.CharField(
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="What the dealer must reach by the deadline, measurably. The dealer admin reads this.",
    )
    deadline = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The review date: in the future, at most a year away.",
    )
    notes = forms.CharField(
        label="Internal notes (optional)",
        max_length=4000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="For vendor staff only: the dealer never sees these.",
    )


class ImprovementPlanReviewForm(forms.Form):
    DECISIONS = [
        ("met", "Goals met: the dealer is active again"),
        ("extend", "Extend: give the dealer more time"),
        ("not_met", "Goals not met: phase the dealer out"),
    ]

    decision = forms.ChoiceField(choices=DECISIONS, widget=forms.RadioSelect)
    outcome = forms.CharField(
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What the review found. The dealer admin reads this in the portal and in the email.",
    )
    deadline = forms.DateField(
        label="New deadline",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Only when you extend the plan.",
    )

    def clean(self):
        data = super().clean()
        if data.get("decision") == "extend" and not data.get("deadline"):
            self.add_error("deadline", "Give the new deadline of the extended plan.")
        return data
