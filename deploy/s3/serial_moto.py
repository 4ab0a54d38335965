"""moto's S3 server, with create-only writes made atomic.

moto checks a PUT's `If-None-Match: *` and then stores the object without a
lock, on a threaded server: two concurrent create-only PUTs of one key can
both succeed, the second silently replacing the first. Real S3 never lets
that happen, and the broker's logs rest on it (the end-to-end test
`broker_storage::three_writers_share_the_metadata_log_on_s3` saw it happen
with stock moto). This runs the same moto application behind one lock held
over every write request, response included; reads stay concurrent.

    python3 serial_moto.py -H 127.0.0.1 -p PORT
"""

import argparse
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

WRITES = {"PUT", "POST", "DELETE"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        if environ.get("REQUEST_METHOD") not in WRITES:
            return app(environ, start_response)
        with lock:
            # The whole response is produced under the lock.
            return list(app(environ, start_response))

    run_simple(args.host, args.port, serialized, threaded=True)


if __name__ == "__main__":
    main()
