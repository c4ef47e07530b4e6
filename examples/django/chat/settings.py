"""Settings of the chat example: no database, sessions in signed cookies.

``SYNCWS_REDIS_URL`` (from the environment) gives ``syncws.django.hub()`` a
Redis backend, for gunicorn with several workers.
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "chat.urls"
WSGI_APPLICATION = "chat.wsgi.application"
INSTALLED_APPS = ["django.contrib.sessions"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.gzip.GZipMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"syncws": {"handlers": ["console"], "level": "INFO"}},
}

# Options of every @websocket view (each view's own arguments win).
SYNCWS_OPTIONS = {"ping_interval": 20.0, "max_size": 64 * 1024}
SYNCWS_REDIS_URL = os.environ.get("SYNCWS_REDIS_URL")
