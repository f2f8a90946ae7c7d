import os

from django.core.asgi import get_asgi_application

from prm import heap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
application = get_asgi_application()
heap.freeze()  # the loaded application, out of the garbage collector's passes
