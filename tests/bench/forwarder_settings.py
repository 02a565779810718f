"""Settings of the bare forwarder (tests/bench/forwarder.py): no apps, no middleware, no database."""

import os

SECRET_KEY = "bench-forwarder-only-not-a-secret"  # a throwaway process on loopback
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.bench.forwarder"
DATABASES: dict[str, dict] = {}
USE_TZ = True
USE_I18N = False
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Where to forward to: the mock upstream's /v1 (set by tests/bench/run.py).
BENCH_UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9100/v1")
# "stock": Django's own ASGIHandler as is; "lean" (default): the same minus its per-request thread hops.
BENCH_HANDLER = os.environ.get("BENCH_FORWARDER_HANDLER", "lean")
