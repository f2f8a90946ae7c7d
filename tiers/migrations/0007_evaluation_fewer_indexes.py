"""Evaluation loses three indexes (see the model): the run's own, which one_evaluation_per_run (run
first) makes redundant, and the two tiers'. Only the indexes are dropped; Django's own AlterField
would also drop and re-add (and so re-validate over every evaluation) the foreign keys."""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = {  # the names Django gave them (the same on every database)
    "run": ("tiers_evaluation_run_id_b00eb2f8", "run_id"),
    "qualified_tier": ("tiers_evaluation_qualified_tier_id_33ca0279", "qualified_tier_id"),
    "held_tier": ("tiers_evaluation_held_tier_id_5909ace5", "held_tier_id"),
}


class Migration(migrations.Migration):
    dependencies = [
        ("tiers", "0006_evaluation_wide_percentages"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="evaluation",
                    name="held_tier",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tiers.tier",
                    ),
                ),
                migrations.AlterField(
                    model_name="evaluation",
                    name="qualified_tier",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tiers.tier",
                    ),
                ),
                migrations.AlterField(
                    model_name="evaluation",
                    name="run",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="evaluations",
                        to="tiers.evaluationrun",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX "{name}" ON "tiers_evaluation" ("{column}")',
                )
                for name, column in INDEXES.values()
            ],
        ),
    ]
