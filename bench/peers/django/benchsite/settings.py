"""Settings for the Django Channels peer of chat-bench.

This is the Channels tutorial's project (`startproject mysite`, app `chat`)
cut down to what the WebSocket route needs. Differences from the tutorial,
all documented in BENCHMARKS.md:

* DEBUG is off (a benchmark should measure a server as deployed; DEBUG
  only affects error pages and logging of SQL, which this route never runs);
* the pages and templates are left out (the benchmark only opens sockets);
* the in-memory channel layer keeps its stock settings (capacity 100 per
  channel, expiry 60 s): chat-bench bounds the messages in flight per room
  below that capacity, so nothing is dropped for lack of room.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "chat-bench-peer-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "daphne",
    "chat",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "benchsite.urls"
ASGI_APPLICATION = "benchsite.asgi.application"

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CHAT_BENCH_DJANGO_DB", BASE_DIR / "db.sqlite3"),
    }
}

USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
