import os

from django.core.wsgi import get_wsgi_application

from prm import heap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
application = get_wsgi_application()
heap.freeze()  # the loaded application, out of the garbage collector's passes
