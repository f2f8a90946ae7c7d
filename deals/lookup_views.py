"""The protection lookup page (vendor staff only; see deals.lookup)."""

from django import forms
from django.conf import settings
from django.shortcuts import render
from django.utils import timezone

from dealers.views import staff_required
from deals import lookup
from prm.ratelimit import rate_limit_consume


class LookupForm(forms.Form):
    q = forms.CharField(
        label="Customer",
        max_length=200,
        min_length=lookup.MIN_QUERY_LENGTH,
        help_text="A company name, VAT or Chamber of Commerce number, website or e-mail address.",
        widget=forms.TextInput(attrs={"type": "search", "autofocus": True, "autocomplete": "off"}),
    )

    def clean_q(self):
        return " ".join(self.cleaned_data["q"].split())


@staff_required
def protection_lookup(request):
    form = LookupForm(request.GET or None)
    context = {"form": form, "results": None, "limit": lookup.RESULT_LIMIT, "today": timezone.localdate()}
    if form.is_valid():
        refusal = rate_limit_consume(scope="lookup", key=request.user.pk, per_hour=settings.PRM_LOOKUPS_PER_HOUR)
        if refusal:  # the query stays in the box; nothing is searched or logged
            return render(request, "deals/lookup.html", {**context, "refusal": refusal}, status=429)
        query = form.cleaned_data["q"]
        results = lookup.protection_lookup(query=query, user=request.user)
        lookup.protection_lookup_log(user=request.user, query=query, result_count=len(results))
        context.update(
            query=query,
            results=results[: lookup.RESULT_LIMIT],
            total=len(results),
            interpretation=lookup.interpret(query),
            scope_note=lookup.SCOPE_NOTE,
        )
    return render(request, "deals/lookup.html", context)
