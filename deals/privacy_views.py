"""Erasing one person's details on request (channel admins only; see deals.privacy).

Three steps, as with every destructive action here: the form, a preview of what will be redacted
(it changes nothing), and the confirmation that erases and shows the logged result."""

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from dealers.views import staff_required
from deals import privacy
from deals.models import ErasureLog


class ErasureForm(forms.Form):
    email = forms.EmailField(label="Email address", help_text="Every occurrence, in any letter case, is erased.")
    name = forms.CharField(
        label="Full name (optional)",
        required=False,
        max_length=200,
        help_text="First and last name as written; matched as whole words. Leave empty to erase the address only.",
    )
    reason = forms.CharField(
        label="Reason",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The request this answers, e.g. “Request by email of 3 March, ticket 1234”. "
        "Kept in the erasure log; the name and address are redacted from it too.",
    )


def _channel_admin_only(request) -> None:
    if not request.user.is_channel_admin:
        raise Http404("Not found")


@staff_required
def person_erase(request):
    _channel_admin_only(request)
    form = ErasureForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if request.POST.get("confirm") != "yes":
                counts = privacy.person_erase_preview(email=data["email"], name=data["name"], actor=request.user)
                return render(
                    request,
                    "deals/person_erase_confirm.html",
                    {"form": form, "counts": counts, "total": sum(counts.values())},
                )
            entry = privacy.person_erase(
                email=data["email"], name=data["name"], actor=request.user, reason=data["reason"]
            )
        except privacy.ErasureError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Erased: {entry.total} record(s) redacted. The erasure is logged.")
            return redirect("deals:erasure_detail", pk=entry.pk)
    return render(request, "deals/person_erase.html", {"form": form})


@staff_required
def erasure_detail(request, pk):
    _channel_admin_only(request)
    entry = get_object_or_404(ErasureLog.objects.select_related("actor"), pk=pk)
    context = {"entry": entry, "counts": privacy.counts_in_order(entry.counts)}
    return render(request, "deals/erasure_detail.html", context)
