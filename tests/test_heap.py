"""The web process freezes the loaded application out of the garbage collector's passes (prm.heap),
and still collects the garbage its requests make."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import gc, {module}
frozen = gc.get_freeze_count()
views_loaded = "deals.views" in __import__("sys").modules
class Cycle:
    pass
a, b = Cycle(), Cycle()
a.other, b.other = b, a
del a, b
print(frozen, views_loaded, gc.collect())
"""


@pytest.mark.parametrize("module", ["prm.wsgi", "prm.asgi"])
def test_the_web_entry_points_freeze_the_loaded_application(module):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "prm.settings", "DJANGO_DEBUG": "1"}
    env.pop("DATABASE_URL", None)  # loading needs no database
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    frozen, views_loaded, collected = out.stdout.split()
    assert int(frozen) > 20_000  # Django, the apps and every view module (the URLconf is loaded first)
    assert views_loaded == "True"
    assert int(collected) >= 2  # a cycle made afterwards is still collected
