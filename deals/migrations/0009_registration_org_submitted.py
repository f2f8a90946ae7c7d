"""A dealer's registrations in the list's order (organisation, newest first submission, then id):
the "my registrations" page reads a page's ids from this index instead of sorting all of the
dealer's rows (at 5,000 registrations, a deep page: 85 ms -> a few ms)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("deals", "0008_registration_period_indexes")]

    operations = [
        migrations.AddIndex(
            model_name="registration",
            index=models.Index(
                fields=["organisation", "-first_submitted_at", "-id"], name="registration_org_submitted"
            ),
        ),
    ]
