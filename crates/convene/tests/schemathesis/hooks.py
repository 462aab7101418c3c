"""Schemathesis hooks for Convene's OpenAPI document (loaded through SCHEMATHESIS_HOOKS by tests/conformance.rs).

The document marks phone numbers with the string format `phone`: the pattern says which spellings are read, and the
number must also be valid for its country code in libphonenumber's metadata, which no regular expression states.
This teaches the generator that format with numbers libphonenumber accepts, in every spelling the API reads.
"""

import re
import uuid

import schemathesis

# Loaded here, before the workers start: schemathesis imports its transports lazily, and two worker threads doing it
# at once can see a half-imported module ("cannot import name 'ASGI_TRANSPORT'").
import schemathesis.transport.asgi  # noqa: F401
import schemathesis.transport.requests  # noqa: F401
import schemathesis.transport.wsgi  # noqa: F401
from hypothesis import strategies as st

IDEMPOTENCY_KEY = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")
PHONE = re.compile(r"\+?[0-9][0-9 ().-]{5,30}|[0-9]{6,15}(?::[0-9]{1,3})?@(?:c\.us|s\.whatsapp\.net)")

NUMBERS = ["17137157533", "18647351567", "447700176576"]
SPELLINGS = [
    lambda n: "+" + n,
    lambda n: n,
    lambda n: "00" + n,
    lambda n: n + "@c.us",
    lambda n: n + "@s.whatsapp.net",
]

# A picture is read by its file signature (a JPEG or PNG), which a `format: binary` schema cannot state: a picture
# form's `file` part (`encoding.contentType` image/jpeg or image/png) is drawn with the signature of its type.
# (Editing the part in `before_call` instead would make schemathesis judge the case invalid: it cannot validate bytes.)
schemathesis.openapi.media_type("image/jpeg", st.binary(max_size=64).map(lambda rest: b"\xff\xd8\xff\xe0" + rest))
schemathesis.openapi.media_type("image/png", st.binary(max_size=64).map(lambda rest: b"\x89PNG\r\n\x1a\n" + rest))

schemathesis.openapi.format(
    "phone", st.builds(lambda n, spell: spell(n), st.sampled_from(NUMBERS), st.sampled_from(SPELLINGS))
)


# Numbers for new sandbox instances, never drawn as participants: an instance's own number is not a participant (422),
# a rule between two requests that no schema can state.
INSTANCE_NUMBERS = ["+12015550142", "+12015550143", "+12015550144", "+12015550145"]


@schemathesis.hook
def before_call(context, case, kwargs):
    """A fresh `Idempotency-Key` for every request that carries a valid one.

    The header means "this is the same request as before": the same key on a different request is refused by design
    (422 `idempotency_key_reused`). A generator draws keys at random and reuses them across different requests, so
    each valid key it draws is replaced by a new UUID; invalid keys (negative cases) are sent as drawn.
    """
    headers = case.headers or {}
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and IDEMPOTENCY_KEY.fullmatch(value):
            headers[name] = str(uuid.uuid4())

    body = case.body
    if case.operation.method.upper() == "POST" and case.operation.path == "/v1/instances" and isinstance(body, dict):
        if isinstance(body.get("phone"), str) and PHONE.fullmatch(body["phone"]):
            if body.get("kind") == "whatsapp":
                # A `whatsapp` instance is whichever number pairs with it: the document says it takes no `phone`
                # (422) in prose, which the schema does not state.
                del body["phone"]
            else:
                body["phone"] = INSTANCE_NUMBERS[uuid.uuid4().int % len(INSTANCE_NUMBERS)]
