"""Settings of the in-process Django tests (tests/django/test_django.py)."""

import os
import tempfile

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "testserver"]
CSRF_TRUSTED_ORIGINS = ["https://*.trusted.example", "http://exact.example:8080"]
ROOT_URLCONF = "tests.django.urls"
INSTALLED_APPS = ["django.contrib.sessions"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.http.ConditionalGetMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
# A file, not ":memory:": Django never closes an in-memory SQLite connection (that
# would lose the database), so each request thread's would be left to the garbage
# collector, which Python 3.13 reports as a ResourceWarning (an error here).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.gettempdir(), f"syncws-django-tests-{os.getpid()}.sqlite3"),
        "ATOMIC_REQUESTS": True,
    }
}
USE_TZ = True
SYNCWS_OPTIONS = {"ping_interval": None}
