#!/usr/bin/env bash
# The threaded suite on the portable code paths, forced on Linux (no Windows or
# macOS machine at hand): Windows' (select, and a writer without sendmsg) and
# macOS' (poll), both reading sockets through Python's socket calls
# (SYNCWS_HELD_IO=0: no such libc calls on Windows). The default run (.ci/run) covers Linux's epoll. No Autobahn.
# Run it from an activated virtualenv with '.[test]' installed; PYTHON picks
# another interpreter. Prints the time each mode took.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
suite=(tests/threaded tests/wsgi tests/test_testing.py tests/test_testing_apps.py tests/django/test_django.py
    tests/test_callbacks.py)
for mode in "select 1 windows" "poll 0 macos"; do
    read -r poller no_sendmsg name <<<"$mode"
    start=$SECONDS
    SYNCWS_POLLER=$poller SYNCWS_NO_SENDMSG=$no_sendmsg SYNCWS_HELD_IO=0 \
        "$python" -m pytest -q -p no:cacheprovider --no-cov "${suite[@]}"
    echo "portable ($name-like: SYNCWS_POLLER=$poller SYNCWS_NO_SENDMSG=$no_sendmsg):" \
        "$((SECONDS - start)) s"
done
