"""The WSGI application, for gunicorn: ``gunicorn -k gthread --threads 8 chat.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat.settings")
application = get_wsgi_application()
