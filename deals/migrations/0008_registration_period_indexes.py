"""The dashboards count the days of a period outside the roll-up's whole months live
(tiers.rollup): by first submission, won date and decision, through these indexes instead of a
cast of every registration's timestamp to a local date. The median review time of a period reads
its decisions from the covering decision indexes alone (all dealers / one dealer's); the open
pipeline of many dealers is read from its own covering index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dealers", "0004_improvement_plans_login_records"),
        ("deals", "0007_registration_customer_name_key"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="registration",
            index=models.Index(fields=["first_submitted_at"], name="registration_submitted"),
        ),
        migrations.AddIndex(
            model_name="registration",
            index=models.Index(
                condition=models.Q(("status", "won")), fields=["won_date"], name="registration_won_date"
            ),
        ),
        migrations.AddIndex(
            model_name="registration",
            index=models.Index(
                fields=["decided_at"],
                include=("organisation", "review_working_hours", "decided_in_time"),
                name="registration_decided",
            ),
        ),
        migrations.AddIndex(
            model_name="registration",
            index=models.Index(
                fields=["organisation", "decided_at"],
                include=("review_working_hours", "decided_in_time"),
                name="registration_dealer_decided",
            ),
        ),
        migrations.AddIndex(
            model_name="registration",
            index=models.Index(
                condition=models.Q(("status", "approved")),
                fields=["protected_until"],
                include=("organisation", "expected_value"),
                name="registration_pipeline",
            ),
        ),
    ]
