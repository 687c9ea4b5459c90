"""Feed a node with jobs using the Python client, and wait for the results.

Start a node with the example processors, from the repository root::

    jobtrio serve --app examples.processors:registry

and in another shell::

    python -m examples.producer                 # http://127.0.0.1:8080
    JOBTRIO_URL=http://node-2:8080 python -m examples.producer --count 500

It submits one high-priority webhook, a batch of thumbnails (all accepted or
none), waits for everything, and prints what happened. Errors come back as
``jobtrio.client`` exceptions carrying the API's status, code and field, so
the script can tell a bad job (``InvalidJob``) from a node that is down
(``ConnectionFailed``) from a full stop (``Unavailable``).
"""

from __future__ import annotations

import argparse
import sys

from jobtrio.client import Client, ConnectionFailed, InvalidJob, JobtrioError, job_submission
from jobtrio.jobs import JobStatus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="the node (default: JOBTRIO_URL or http://127.0.0.1:8080)")
    parser.add_argument("--count", type=int, default=100, help="thumbnails to submit")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait in all")
    args = parser.parse_args(argv)

    try:
        with Client(args.url) as client:
            hook = client.submit(
                "webhook",
                {"url": "https://example.com/hooks/orders"},
                priority=10,
                max_retries=5,
                idempotency_key="order-1001-created",
            )
            print(f"webhook {hook.id}: {hook.status}")

            thumbnails = client.submit_many(
                job_submission("thumbnail", {"width": 400 + i, "height": 300}, priority=3)
                for i in range(args.count)
            )
            print(f"{len(thumbnails)} thumbnails accepted")

            done = client.wait_many([hook, *thumbnails], timeout=args.timeout)
    except InvalidJob as exc:
        print(f"refused: {exc} (field {exc.field}; {exc.errors[:3]})", file=sys.stderr)
        return 2
    except ConnectionFailed as exc:
        print(f"{exc}; is `jobtrio serve --app examples.processors:registry` running?")
        return 1
    except JobtrioError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1

    failed = [job for job in done if job.status != JobStatus.COMPLETED]
    print(f"webhook result: {done[0].result}")
    print(f"first thumbnail: {done[1].result if len(done) > 1 else None}")
    print(f"{len(done) - len(failed)} completed, {len(failed)} did not")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
