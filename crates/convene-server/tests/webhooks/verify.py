"""Checks Convene's webhook signatures with the `standardwebhooks` package from PyPI: an implementation of the
Standard Webhooks spec that is not ours.

Reads JSON on stdin: {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "..."}, ...]} and verifies
every delivery with that secret (timestamp tolerance included: the headers carry the wall clock). Prints
{"verified": N, "failures": [...]} and exits 1 when any delivery fails.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    job = json.load(sys.stdin)
    webhook = Webhook(job["secret"])
    verified, failures = 0, []
    for delivery in job["deliveries"]:
        try:
            webhook.verify(delivery["body"], delivery["headers"])
            verified += 1
        except WebhookVerificationError as e:
            failures.append({"webhook-id": delivery["headers"].get("webhook-id"), "error": str(e)})
    print(json.dumps({"verified": verified, "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
