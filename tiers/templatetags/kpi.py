"""{{ value|kpi:"€" }}: a KPI figure as the dashboards print it (what dashboards/_value.html writes).

A filter, not an include: the partner manager's table has nine figures in each of its 25 rows, and
225 includes (each a template lookup and a context) took about a third of the page's time."""

from django import template
from django.template.defaultfilters import floatformat
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()

NO_DATA = mark_safe('<span class="muted" title="No data in this period">—</span>')


@register.filter
def kpi(value, unit=""):
    if value is None:
        return NO_DATA
    if unit == "€":
        return format_html("€{}", floatformat(value, "0g"))
    if unit == "%":
        return format_html("{}%", floatformat(value, "-1"))
    return floatformat(value, "-1g")
