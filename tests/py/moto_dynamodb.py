#!/usr/bin/env python3
"""moto's server for the DynamoDB tests, with every request handled one at a time.

`moto_server -H 127.0.0.1 -p PORT` runs moto's app on a threaded Werkzeug server, and moto
does not isolate concurrent requests: two `TransactWriteItems` racing on one item can both
pass their `ConditionExpression` (measured: 16 concurrent conditional transactions had two
winners in 2 of 20 rounds). DynamoDB itself serialises conflicting transactions, and the
store's race tests depend on that. This runs the very same app as `moto_server` (moto's
`DomainDispatcherApplication`), still on a threaded server so that keep-alive connections do
not block each other, but takes one lock around each request, which makes every request,
and so every transaction, atomic.

Usage: python3 tests/py/moto_dynamodb.py [-H HOST] [-p PORT]   (defaults 127.0.0.1:5000)
"""

import argparse
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class Serialised:
    """WSGI middleware: one request at a time, body included."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            body = self.app(environ, start_response)
            try:
                chunks = list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        return chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, Serialised(app), threaded=True)


if __name__ == "__main__":
    main()
