"""mock_openapi.py: the platforms' OpenAPIs as the end-to-end tests need them
(protocols.md sections 3, 5 and 6): Baidu (cashier queries, TP tokens and
payment-service status), the Alipay gateway and an aggregated gateway's
trade.query, served on 127.0.0.1 by a threaded server the test starts and
stops itself.

    with MockOpenAPI() as mock:
        mock.baidu_orders["T1"] = dict(orderId="8001", status=2, totalMoney=1234)
        mock.alipay_trades["A1"] = dict(trade_no="2024...", trade_status="TRADE_SUCCESS",
                                        total_amount="12.34")
        mock.respond("baidu.find_order", 503, b"busy")       # first call only
        mock.delay("alipay.trade.query", 2.0)                  # then a slow one
        ... config: [openapi] baidu_base = mock.base
                              alipay_gateway = mock.base + "/gateway.do"
                    [gateway g] query_url = mock.base + "/gateway/query"
                    [alipay.app a] alipay_public_key = mock.write_alipay_public_pem(dir)
        mock.wait_for(2, "baidu.find_order")
        req = mock.requests("baidu.find_order")[0]; req.query["access_token"]

Every request is recorded (Request); each route has a queue of scripted
answers (Answer) served in order, and a default handler answering from the
tables the test fills once the queue is empty. Alipay answers are signed by
the mock's own platform key over the exact text of the response object, as
Alipay does; forged, tampered and unsigned answers are one call away.
Signatures are made and checked with `cryptography`, independently of
payhookd's C code.

Python 3.11 standard library plus python3-cryptography only.
"""
import base64
import collections
import dataclasses
import hashlib
import hmac
import http.server
import itertools
import json
import os
import socket
import struct
import sys
import threading
import time
import traceback
import unittest
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from harness import Daemon, RsaKey, load_vector

# path -> route key. Both the cashier path and the TP one (".../tp/...") map
# to the same key; Request.path tells them apart.
_PAY = "/rest/2.0/smartapp/pay/paymentservice/"
ROUTES = {
    _PAY + "findByTpOrderId": "baidu.find_order",
    _PAY + "tp/findByTpOrderId": "baidu.find_order",
    _PAY + "findOrderRefund": "baidu.find_refund",
    _PAY + "tp/findOrderRefund": "baidu.find_refund",
    "/public/2.0/smartapp/auth/tp/token": "baidu.tp_token",
    "/rest/2.0/oauth/token": "baidu.app_token",
    "/rest/2.0/smartapp/auth/retrieve/authorizationcode": "baidu.retrieve_code",
    _PAY + "getbindservice": "baidu.getbindservice",
    _PAY + "auditstatus": "baidu.pay_service_audit",
    "/rest/2.0/smartapp/pay/account/auditstatus": "baidu.account_audit",
    "/rest/2.0/smartapp/pushmsg/getmsg": "baidu.getmsg",
    _PAY + "orderlist": "baidu.orderlist",
    "/gateway.do": "alipay",
    "/gateway/query": "gateway.query",
}
ROUTE_KEYS = sorted(set(ROUTES.values()))

JSON_TYPE = "application/json;charset=utf-8"
# What the real Alipay gateway labels its JSON with: a client must not care.
ALIPAY_TYPE = "text/html;charset=utf-8"
MAX_REQUEST_BODY = 16 << 20


def _dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _jbytes(obj):
    return _dumps(obj).encode("utf-8")


def _baidu_time(text):
    """Baidu's "YYYY-MM-DD HH:MM:SS" (UTC+8) as unix seconds."""
    import datetime
    t = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    tz = datetime.timezone(datetime.timedelta(hours=8))
    return int(t.replace(tzinfo=tz).timestamp())


def _value(entry, req):
    """A table entry may be a value or a callable(req) giving one (state
    that changes from call to call)."""
    return entry(req) if callable(entry) else entry


# ---- requests and answers ---------------------------------------------------

@dataclasses.dataclass
class Request:
    """One request as the mock received it. `query` and `form` map each key
    to its last value; `query_list` / `form_list` keep every pair in order."""
    method: str
    path: str                  # without the query string
    target: str                # the request target as sent
    query: dict
    query_list: list
    headers: dict              # lower-case names; repeated headers joined by ", "
    header_list: list          # [(name, value)] as sent
    body: bytes = b""
    form: dict = dataclasses.field(default_factory=dict)
    form_list: list = dataclasses.field(default_factory=list)
    json: object = None        # the parsed JSON body, when it is JSON
    time: float = 0.0          # time.monotonic() at arrival
    route: str = None          # route key, None for an unknown path
    method_key: str = None     # Alipay: the form's `method` (e.g. alipay.trade.query)
    client: tuple = None
    end_time: float = None     # when the answer was written (or the connection dropped)
    status: int = None         # HTTP status answered; None when dropped
    answer: str = None         # "scripted", "default", "close", "reset", ...
    error: str = None          # a traceback if the mock itself failed

    @property
    def params(self):
        """Query and form merged (form wins): the Alipay and gateway view."""
        p = dict(self.query)
        p.update(self.form)
        if isinstance(self.json, dict):
            p.update({k: v if isinstance(v, str) else _dumps(v) for k, v in self.json.items()})
        return p

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def matches(self, route):
        if route is None:
            return True
        if callable(route):
            return route(self)
        return route in (self.route, self.method_key)


@dataclasses.dataclass
class Answer:
    """One scripted answer. body None = the default handler's answer (after
    `delay`), so `Answer(delay=3)` is "the normal answer, but slow"; status
    None = the default handler's status (200 with a body given)."""
    status: int = None
    body: bytes = None
    headers: dict = None
    content_type: str = None
    delay: float = 0.0         # seconds before answering (or dropping)
    close: bool = False        # drop the connection (FIN) without answering
    reset: bool = False        # drop it with a RST instead
    oversize: int = None       # answer a body of this many bytes (JSON-looking)
    chunked: bool = False      # send the body chunked, with no Content-Length
    partial: bool = False      # headers and half the body, then drop

    def __post_init__(self):
        if isinstance(self.body, str):
            self.body = self.body.encode("utf-8")
        elif isinstance(self.body, (dict, list)):
            self.body = _jbytes(self.body)


def oversize_body(n):
    """n bytes of valid JSON (when n allows), Baidu-shaped."""
    head, tail = b'{"errno":0,"msg":"success","data":{"pad":"', b'"}}'
    if n < len(head) + len(tail):
        return b"x" * n
    return head + b"x" * (n - len(head) - len(tail)) + tail


# ---- Alipay signatures (protocols.md section 5) ------------------------------

def _pairs_bytes(s):
    """k=v pairs of a query string or form body as bytes, decoded once,
    split at the first '=' (the daemon's signature covers decoded values)."""
    out = []
    for piece in s.split(b"&"):
        if not piece:
            continue
        k, _, v = piece.partition(b"=")
        out.append((urllib.parse.unquote_to_bytes(k.replace(b"+", b" ")),
                    urllib.parse.unquote_to_bytes(v.replace(b"+", b" "))))
    return out


def _request_pairs(req):
    """Every parameter of a request (query string, then form body) as bytes."""
    pairs = _pairs_bytes(urllib.parse.urlsplit(req.target).query.encode("latin-1"))
    if req.form_list:
        pairs += _pairs_bytes(req.body)
    return pairs


def alipay_request_string(pairs):
    """The string an Alipay request signature covers: all non-empty
    parameters except sign, sorted by key bytes, k=v joined by &."""
    items = sorted((k, v) for k, v in pairs if k != b"sign" and v != b"")
    return b"&".join(k + b"=" + v for k, v in items)


def _public_key(pem):
    if isinstance(pem, str):
        pem = pem.encode()
    return serialization.load_pem_public_key(pem)


def rsa_verify(public_pem, data, sign_b64, hash_name="sha256"):
    h = hashes.SHA256() if hash_name == "sha256" else hashes.SHA1()
    try:
        sig = base64.b64decode(sign_b64, validate=True)
        _public_key(public_pem).verify(sig, data, padding.PKCS1v15(), h)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def verify_alipay_request(req, app_public_key_pem, require_rsa2=True):
    """True when the request (query string and form together) carries a valid
    RSA2 signature by the app's key (protocols.md section 5). A parameter that
    occurs twice makes the request ambiguous: False."""
    pairs = _request_pairs(req)
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        return False
    d = dict(pairs)
    if b"sign" not in d or (require_rsa2 and d.get(b"sign_type") != b"RSA2"):
        return False
    return rsa_verify(app_public_key_pem, alipay_request_string(pairs), d[b"sign"].decode("latin-1"))


def sign_alipay_request(fields, app_key):
    """fields (list of (k, v)) plus sign, signed as an Alipay client does
    (app_key: a harness.RsaKey). For building requests in tests."""
    fields = [(k, v) for k, v in fields if k != "sign"]
    pairs = [(str(k).encode(), str(v).encode()) for k, v in fields]
    return fields + [("sign", app_key.sign(alipay_request_string(pairs), "sha256"))]


def _skip_ws(b, i):
    while i < len(b) and b[i] in b" \t\r\n":
        i += 1
    return i


def _skip_string(b, i):
    """b[i] is '"': the index after the closing quote."""
    i += 1
    while i < len(b):
        c = b[i]
        if c == 0x5C:  # backslash: skip the escaped byte
            i += 2
            continue
        if c == 0x22:
            return i + 1
        i += 1
    raise ValueError("unterminated string")


def _skip_value(b, i):
    """The index after the JSON value starting at b[i] (string-aware brace
    matching; the value is not parsed)."""
    if b[i:i + 1] == b'"':
        return _skip_string(b, i)
    if b[i:i + 1] in (b"{", b"["):
        depth = 0
        while i < len(b):
            c = b[i:i + 1]
            if c == b'"':
                i = _skip_string(b, i)
                continue
            if c in (b"{", b"["):
                depth += 1
            elif c in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise ValueError("unbalanced braces")
    j = i
    while j < len(b) and b[j:j + 1] not in (b",", b"}", b"]", b" ", b"\t", b"\r", b"\n"):
        j += 1
    if j == i:
        raise ValueError("no value at %d" % i)
    return j


def top_level_members(body):
    """[(key, raw value bytes)] of a top-level JSON object, in order, with the
    raw bytes of each value exactly as they occur in body."""
    b = body if isinstance(body, bytes) else body.encode("utf-8")
    i = _skip_ws(b, 0)
    if b[i:i + 1] != b"{":
        raise ValueError("not an object")
    i = _skip_ws(b, i + 1)
    out = []
    if b[i:i + 1] == b"}":
        return out
    while True:
        if b[i:i + 1] != b'"':
            raise ValueError("key expected at %d" % i)
        j = _skip_string(b, i)
        key = json.loads(b[i:j].decode("utf-8"))
        i = _skip_ws(b, j)
        if b[i:i + 1] != b":":
            raise ValueError("':' expected at %d" % i)
        i = _skip_ws(b, i + 1)
        j = _skip_value(b, i)
        out.append((key, b[i:j]))
        i = _skip_ws(b, j)
        if b[i:i + 1] == b",":
            i = _skip_ws(b, i + 1)
            continue
        if b[i:i + 1] == b"}":
            return out
        raise ValueError("',' or '}' expected at %d" % i)


def extract_signed_text(body, response_key):
    """The exact bytes of the value of response_key (from its '{' to the
    matching '}'), the text Alipay signs. ValueError when the key is missing
    or occurs twice."""
    found = [v for k, v in top_level_members(body) if k == response_key]
    if len(found) != 1:
        raise ValueError("%s occurs %d times" % (response_key, len(found)))
    return found[0]


def response_key(method):
    return method.replace(".", "_") + "_response"


def verify_alipay_response(body, method_or_key, public_pem, slash_retry=False):
    """True when an Alipay answer's sign verifies over the raw text of its
    response object. method_or_key: 'alipay.trade.query' or the response key
    itself. slash_retry: also accept it after '\\/' -> '/' (the SDKs' retry)."""
    key = method_or_key if method_or_key.endswith("_response") else response_key(method_or_key)
    try:
        text = extract_signed_text(body, key)
        sign = json.loads(body).get("sign")
    except ValueError:
        return False
    if not isinstance(sign, str):
        return False
    if rsa_verify(public_pem, text, sign):
        return True
    return slash_retry and b"\\/" in text and rsa_verify(public_pem, text.replace(b"\\/", b"/"), sign)


# ---- gateway MD5 (protocols.md section 6) -------------------------------------

def gateway_md5(params, secret, mode="key", exclude=("sign", "sign_type"), upper=False):
    """The MD5 sign of params (dict or list of pairs): drop excluded keys and
    empty values, sort by key, k=v joined by &, append '&key=<secret>'
    (mode 'key') or the secret alone (mode 'plain'), MD5, hex."""
    items = params.items() if isinstance(params, dict) else params
    data = "&".join("%s=%s" % (k, v) for k, v in sorted(
        (str(k), str(v)) for k, v in items if k not in exclude and str(v) != ""))
    data += ("&key=" + secret) if mode == "key" else secret
    h = hashlib.md5(data.encode("utf-8")).hexdigest()
    return h.upper() if upper else h


def verify_gateway_request(req, secret, mode="key", exclude=("sign", "sign_type")):
    """True when the request's `sign` is the MD5 sign of its parameters
    (query, form or top-level JSON), compared case-insensitively in
    constant time."""
    params = req.params
    sign = params.get("sign")
    if not isinstance(sign, str):
        return False
    want = gateway_md5(params, secret, mode, exclude)
    return hmac.compare_digest(want.encode(), sign.lower().encode())


# ---- real vectors -------------------------------------------------------------

class Vector:
    """An Alipay OpenAPI response vector from ../shared/vectors: `raw` is the
    response body bytes (inputs.raw_response), `public_key_pem` the platform
    key that signed it (inputs.public_key_pem), `response_key` the signed
    member, `signed_content` its exact bytes, `content` that object parsed,
    `expected` 'valid' or 'invalid'."""

    def __init__(self, name):
        self.name = name if name.endswith(".json") else name + ".json"
        self.data = load_vector(self.name)
        inp = self.data["inputs"]
        self.expected = self.data.get("expected")
        self.raw = inp["raw_response"].encode("utf-8") if inp.get("raw_response") is not None else None
        self.response_key = inp.get("response_key")
        self.signed_content = inp["signed_content"].encode("utf-8")
        self.signature = inp.get("signature")
        self.public_key_pem = inp["public_key_pem"]
        self.content = json.loads(self.signed_content)

    def response_bytes(self, response_key=None):
        """The body to serve: the vector's raw response, or for a
        content-only vector the signed content wrapped under response_key."""
        if self.raw is not None and response_key is None:
            return self.raw
        key = response_key or self.response_key
        if not key:
            raise ValueError("%s has no raw_response: give response_key" % self.name)
        return (b'{"' + key.encode() + b'":' + self.signed_content + b',"sign":"'
                + self.signature.encode() + b'"}')

    def write_public_pem(self, directory, name=None):
        path = os.path.join(directory, name or self.name[:-5] + ".pem")
        with open(path, "w") as f:
            f.write(self.public_key_pem)
        return path


# ---- the server ---------------------------------------------------------------

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client closing its keep-alive connection (payhookd stopping or
        # killed) is normal; anything else is printed as usual.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is closed after this

    def log_message(self, fmt, *args):
        if os.environ.get("MOCK_OPENAPI_VERBOSE") == "1":
            super().log_message(fmt, *args)

    def setup(self):
        super().setup()
        with self.server.mock.lock:
            self.server.mock._conns.add(self.connection)

    def finish(self):
        with self.server.mock.lock:
            self.server.mock._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self):
        self.server.mock._handle(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_REQUEST_BODY:
            raise ValueError("request body of %d bytes" % n)
        return self.rfile.read(n) if n > 0 else b""


class MockOpenAPI:
    """The platforms' OpenAPIs on 127.0.0.1:<free port>. A context manager
    (or start()/stop()). See the module docstring."""

    def __init__(self, port=0, key_bits=2048):
        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self._stopping = threading.Event()
        self._records = []
        self._queues = collections.defaultdict(collections.deque)
        self._in_flight = collections.Counter()
        self._max_in_flight = collections.Counter()
        self._conns = set()          # open connections, cut at stop()
        self.errors = []             # tracebacks of the mock's own failures
        self.routes = dict(ROUTES)   # tests may add paths: mock.routes[path] = key
        self.handlers = {}           # key -> callable(req) -> Answer, overrides a default
        self._port = port
        self._server = self._thread = None
        self._serial = itertools.count(1)

        # Baidu (protocols.md section 3). Tables may hold callables(req).
        self.baidu_orders = {}       # tpOrderId -> dict of findByTpOrderId `data`
        self.baidu_refunds = {}      # tpOrderId -> list of findOrderRefund batches
        self.baidu_unknown_order = (50003, "order not exist")  # (errno, msg) for an unknown tpOrderId
        self.baidu_tokens = None     # None: any access_token; a set: only these (others error_code 110)
        self.baidu_tp_token = "mock-tp-token-%08x" % struct.unpack(">I", os.urandom(4))[0]
        self.baidu_tickets = []      # tickets seen by the TP token endpoint
        self.baidu_codes = None      # None: any authorization code; a set: only these (single use)
        self.baidu_refresh_tokens = set()   # valid single-use refresh tokens (issued ones are added)
        self.baidu_issued = []       # [{app_token answer}] in order
        self.baidu_app_expires_in = 3600     # expires_in of issued app tokens (or callable(n))
        self.baidu_unauthorized_apps = set()  # app_ids answered errno 50032 by retrieve_code
        self.baidu_bindservice = {}  # access_token (or "*") -> getbindservice `data`
        self.baidu_pay_service_audit = {}  # access_token (or "*") -> {"status":..,"fail_reason":..}
        self.baidu_account_audit = {}      # access_token (or "*") -> {"status":..,"verify_message":..}

        # Baidu order list (seed document 000, 4.1): the orders a sweep reads,
        # each a dict of the list's fields (order_id, tp_order_id, sub_status,
        # total_money, create_time "YYYY-MM-DD HH:MM:SS" UTC+8, ...); served
        # those whose create_time falls in [start_time, end_time], in order,
        # paged by current_page / page_size.
        self.baidu_order_list = []

        # Alipay (section 5).
        self.alipay_key = RsaKey(key_bits)      # the platform's key: signs answers
        self.alipay_public_pem = self.alipay_key.public_pem()
        self._forger = None
        self.alipay_trades = {}      # out_trade_no -> dict of alipay_trade_query_response fields
        self.alipay_refunds = {}     # out_request_no -> dict of ..._fastpay_refund_query_response fields
        self.alipay_escape_slashes = True    # '/' written '\/' like the real gateway
        self.alipay_sign_mode = "valid"      # default answers: valid | forged | tampered | unsigned
        self.alipay_tamper = {"total_amount": "99999.99"}  # fields changed by mode "tampered"
        self.alipay_app_keys = {}    # app_id -> app public PEM: when non-empty, requests are verified
        self.alipay_content_type = ALIPAY_TYPE

        # Aggregated gateway (section 6).
        self.gateway_trades = {}     # out_trade_no -> dict of the trade.query answer
        self.gateway_secret = None   # when set, answers carry sign_type=MD5 and sign
        self.gateway_sign_mode = "key"

    # -- life cycle --

    def start(self):
        self._server = _Server(("127.0.0.1", self._port), _Handler)
        self._server.mock = self
        self.port = self._server.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        self.alipay_gateway = self.base + "/gateway.do"
        self.gateway_query_url = self.base + "/gateway/query"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="mock-openapi")
        self._thread.start()
        return self

    def stop(self):
        """Stop serving; requests waiting in a delay are dropped unanswered."""
        self._stopping.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            with self.lock:
                conns = list(self._conns)
            for c in conns:  # idle keep-alive connections: the daemon sees the server go
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(5)
            self._server = None
        with self._cond:
            self._cond.notify_all()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def write_alipay_public_pem(self, directory, name="alipay_public.pem"):
        """The file for [alipay.app] alipay_public_key."""
        return self.alipay_key.write_public_pem(directory, name)

    # -- scripting --

    def script(self, route, *answers):
        """Queue answers for route ('baidu.find_order', 'alipay',
        'alipay.trade.query', ...), served in order before the default."""
        with self.lock:
            self._queues[route].extend(answers)

    def respond(self, route, status, body=b"", times=1, **kw):
        """Queue `times` answers of status and raw body (bytes, str or dict)."""
        self.script(route, *[Answer(status=status, body=body, **kw) for _ in range(times)])

    def delay(self, route, seconds, body=None, status=None, times=1, **kw):
        """Queue `times` answers given after `seconds` (the default answer
        unless a body is given)."""
        self.script(route, *[Answer(status=status, body=body, delay=seconds, **kw) for _ in range(times)])

    def close(self, route, delay=0.0, times=1, reset=False):
        """Queue `times` dropped connections (no answer at all)."""
        self.script(route, *[Answer(close=True, reset=reset, delay=delay) for _ in range(times)])

    def oversize(self, route, nbytes, status=200, times=1, **kw):
        """Queue `times` answers with a body of nbytes."""
        self.script(route, *[Answer(status=status, oversize=nbytes, **kw) for _ in range(times)])

    def serve_vector(self, route, name, response_key=None, **kw):
        """Queue a real vector's raw response bytes (byte for byte) and
        return the Vector (its .public_key_pem is what verifies it)."""
        v = Vector(name)
        kw.setdefault("content_type", ALIPAY_TYPE if route.startswith("alipay") else None)
        self.script(route, Answer(status=kw.pop("status", 200), body=v.response_bytes(response_key), **kw))
        return v

    def pending(self, route):
        """How many scripted answers are still queued for route."""
        with self.lock:
            return len(self._queues[route])

    def clear(self, route=None):
        """Drop queued answers (of one route, or all)."""
        with self.lock:
            if route is None:
                self._queues.clear()
            else:
                self._queues[route].clear()

    # -- the record --

    def requests(self, route=None):
        """Recorded requests (a copy), oldest first; route: a key, an Alipay
        method, a predicate, or None for all."""
        with self.lock:
            return [r for r in self._records if r.matches(route)]

    def count(self, route=None):
        return len(self.requests(route))

    def last(self, route=None):
        r = self.requests(route)
        return r[-1] if r else None

    def reset_record(self):
        """Forget the recorded requests (and the in-flight maxima)."""
        with self.lock:
            self._records.clear()
            self._max_in_flight.clear()

    def reset(self):
        """Record, queues and errors cleared (the tables stay: the test owns them)."""
        with self.lock:
            self.reset_record()
            self._queues.clear()
            self.errors.clear()

    def wait_for(self, n, route=None, timeout=10.0, answered=False):
        """Block until n requests matching route arrived (answered: and were
        answered or dropped); returns them. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self._records if r.matches(route)
                       and (not answered or r.end_time is not None)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("mock: %d of %d %s requests within %.1fs (all: %s)" % (
                        len(got), n, route, timeout, [(r.method, r.path) for r in self._records]))
                self._cond.wait(left)

    def times(self, route=None):
        return [r.time for r in self.requests(route)]

    def per_second(self, route=None, bucket=1.0, since=None):
        """Counts of requests in consecutive buckets of `bucket` seconds from
        `since` (a time.monotonic() value; default the first request)."""
        ts = [t for t in self.times(route) if since is None or t >= since]
        if not ts:
            return []
        t0 = ts[0] if since is None else since
        counts = [0] * (int((ts[-1] - t0) // bucket) + 1)
        for t in ts:
            counts[int((t - t0) // bucket)] += 1
        return counts

    def max_rate(self, route=None, window=1.0):
        """The most requests that arrived within any `window` seconds."""
        ts = self.times(route)
        best, lo = 0, 0
        for hi, t in enumerate(ts):
            while t - ts[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def max_in_flight(self, route=None):
        """The most requests of route (a route key or None for all) being
        handled at once, delays included."""
        with self.lock:
            return self._max_in_flight[route]

    # -- Alipay answers --

    def _forger_key(self):
        if self._forger is None:
            self._forger = RsaKey(self.alipay_key.priv.key_size)
        return self._forger

    def _content_text(self, obj, escape_slashes):
        text = _dumps(obj)
        esc = self.alipay_escape_slashes if escape_slashes is None else escape_slashes
        return (text.replace("/", "\\/") if esc else text).encode("utf-8")

    def alipay_response(self, method, obj, mode="valid", escape_slashes=None, tamper=None):
        """The body {"<method>_response":obj,"sign":"..."} with obj serialised
        compactly in its key order. mode: 'valid' (signed by the mock's
        platform key over the exact object text), 'forged' (signed by another
        key), 'tampered' (signed, then the fields in `tamper` changed),
        'unsigned' (no sign member)."""
        key = response_key(method).encode()
        content = self._content_text(obj, escape_slashes)
        if mode == "unsigned":
            return b'{"' + key + b'":' + content + b"}"
        signer = self._forger_key() if mode == "forged" else self.alipay_key
        sign = signer.sign(content, "sha256").encode()
        if mode == "tampered":
            changed = dict(obj)
            changed.update(tamper if tamper is not None else self.alipay_tamper)
            if changed == obj:
                changed["msg"] = obj.get("msg", "") + "!"
            content = self._content_text(changed, escape_slashes)
        elif mode != "valid" and mode != "forged":
            raise ValueError("alipay sign mode %r" % mode)
        return b'{"' + key + b'":' + content + b',"sign":"' + sign + b'"}'

    def signed_alipay_response(self, method, obj, **kw):
        return self.alipay_response(method, obj, "valid", **kw)

    def forged_alipay_response(self, method, obj, **kw):
        """Valid JSON, signed by a key that is not the platform's."""
        return self.alipay_response(method, obj, "forged", **kw)

    def tampered_alipay_response(self, method, obj, tamper=None, **kw):
        """Signed, then a field changed (default self.alipay_tamper)."""
        return self.alipay_response(method, obj, "tampered", tamper=tamper, **kw)

    def trade_query_object(self, out_trade_no, req=None):
        """The alipay_trade_query_response object the default handler signs
        for out_trade_no: code 10000 and the table's fields, or 40004
        ACQ.TRADE_NOT_EXIST for an order not in alipay_trades."""
        entry = self.alipay_trades.get(out_trade_no) if out_trade_no is not None else None
        if entry is None:
            obj = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                   "sub_msg": "交易不存在", "buyer_pay_amount": "0.00", "invoice_amount": "0.00",
                   "out_trade_no": out_trade_no, "point_amount": "0.00", "receipt_amount": "0.00"}
            if out_trade_no is None:
                del obj["out_trade_no"]
            return obj
        obj = {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no}
        obj.update(_value(entry, req))
        return obj

    # -- dispatch --

    def _record(self, h, t0):
        split = urllib.parse.urlsplit(h.path)
        qlist = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        hl = list(h.headers.items())
        headers = {}
        for k, v in hl:
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        req = Request(method=h.command, path=split.path, target=h.path, query=dict(qlist),
                      query_list=qlist, headers=headers, header_list=hl, time=t0,
                      client=h.client_address, route=self.routes.get(split.path))
        req.body = h.read_body()
        ctype = headers.get("content-type", "").lower()
        text = req.body.decode("utf-8", "replace")
        if "json" in ctype or text.lstrip().startswith(("{", "[")):
            try:
                req.json = json.loads(text)
            except ValueError:
                pass
        if req.json is None and req.body and ("form" in ctype or not ctype):
            req.form_list = urllib.parse.parse_qsl(text, keep_blank_values=True)
            req.form = dict(req.form_list)
        if req.route == "alipay":
            req.method_key = req.params.get("method")
        return req

    def _next_answer(self, req):
        keys = [k for k in (req.method_key, req.route) if k]
        with self.lock:
            for k in keys:
                if self._queues.get(k):
                    return self._queues[k].popleft(), "scripted"
        return None, "default"

    def _default(self, req):
        fn = self.handlers.get(req.route)
        if fn is None and req.route:
            fn = getattr(self, "_h_" + req.route.replace(".", "_"), None)
        if fn is None:
            if req.route:  # a test-added path with no handler
                return Answer(200, b"{}")
            # What openapi.baidu.com says for a path it does not serve.
            return Answer(404, _jbytes({"error_code": 3, "error_msg": "Unsupported openapi method"}))
        a = fn(req)
        return a if isinstance(a, Answer) else Answer(*a)

    def _handle(self, h):
        t0 = time.monotonic()
        try:
            req = self._record(h, t0)
        except Exception:
            self.errors.append(traceback.format_exc())
            h.close_connection = True
            h.send_error(400)
            return
        fkeys = (None, req.route) if req.route else (None,)
        with self._cond:
            self._records.append(req)
            for k in fkeys:
                self._in_flight[k] += 1
                self._max_in_flight[k] = max(self._max_in_flight[k], self._in_flight[k])
            self._cond.notify_all()
        try:
            self._answer(h, req)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        except Exception:
            req.error = traceback.format_exc()
            self.errors.append(req.error)
            h.close_connection = True
        finally:
            with self._cond:
                req.end_time = time.monotonic()
                for k in fkeys:
                    self._in_flight[k] -= 1
                self._cond.notify_all()

    def _answer(self, h, req):
        ans, how = self._next_answer(req)
        ans = ans or Answer()
        if ans.delay > 0 and self._stopping.wait(ans.delay):
            ans = Answer(close=True)  # stopping: drop what waits
        if ans.close or ans.reset:
            req.answer = "reset" if ans.reset else "close"
            self._drop(h, ans.reset)
            return
        if ans.oversize is not None:
            status, body, ctype = ans.status or 200, None, ans.content_type or JSON_TYPE
            req.answer = how + ":oversize"
        elif ans.body is None:
            try:
                d = self._default(req)
            except Exception:
                req.error = traceback.format_exc()
                self.errors.append(req.error)
                d = Answer(500, req.error)
            if d.close or d.reset:
                req.answer = "default:close"
                self._drop(h, d.reset)
                return
            status = ans.status or d.status or 200
            body = d.body or b""
            ctype = ans.content_type or d.content_type or self._ctype(req)
            ans = dataclasses.replace(ans, headers={**(d.headers or {}), **(ans.headers or {})})
            req.answer = how if how == "default" else how + ":default"
        else:
            status, body, ctype = ans.status or 200, ans.body, ans.content_type or self._ctype(req)
            req.answer = how
        req.status = status
        self._write(h, ans, status, body, ctype)

    def _ctype(self, req):
        return self.alipay_content_type if req.route == "alipay" else JSON_TYPE

    def _drop(self, h, reset):
        h.close_connection = True
        if reset:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()  # closed for real (RST) once the handler's files go
        else:
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _write(self, h, ans, status, body, ctype):
        n = ans.oversize if ans.oversize is not None else len(body)
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        for k, v in (ans.headers or {}).items():
            h.send_header(k, v)
        if ans.chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(n))
        h.end_headers()
        if h.command == "HEAD":
            return
        if ans.partial:
            n //= 2
        if ans.oversize is not None:
            body = oversize_body(ans.oversize)
        for off in range(0, n, 65536):
            piece = body[off:min(off + 65536, n)]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if ans.chunked else piece)
        if ans.partial:
            self._drop(h, False)
        elif ans.chunked:
            h.wfile.write(b"0\r\n\r\n")

    # -- default handlers: Baidu --

    def _baidu_json(self, obj, status=200):
        return Answer(status, _jbytes(obj))

    def _baidu_token_error(self, req):
        """openapi.baidu.com's answer to a missing or unknown access_token."""
        tok = req.params.get("access_token")
        if not tok or (self.baidu_tokens is not None and tok not in self.baidu_tokens):
            return self._baidu_json({"error_code": 110,
                                     "error_msg": "Access token invalid or no longer valid"})
        return None

    def _per_token(self, table, req):
        tok = req.params.get("access_token")
        entry = table.get(tok, table.get("*"))
        return None if entry is None else _value(entry, req)

    def _h_baidu_find_order(self, req):
        err = self._baidu_token_error(req)
        if err:
            return err
        tp = req.params.get("tpOrderId")
        if not tp:
            return self._baidu_json({"errno": 60000, "msg": "参数错误"})
        entry = self.baidu_orders.get(tp)
        if entry is None:
            errno, msg = self.baidu_unknown_order
            return self._baidu_json({"errno": errno, "msg": msg})
        data = {"tpOrderId": tp}
        data.update(_value(entry, req))
        return self._baidu_json({"errno": 0, "msg": "success", "data": data})

    def _h_baidu_orderlist(self, req):
        err = self._baidu_token_error(req)
        if err:
            return err
        p = req.params
        try:
            start, end = int(p["start_time"]), int(p["end_time"])
            page, size = int(p["current_page"]), int(p["page_size"])
            assert p["status"] == "all" and page >= 1 and 1 <= size <= 1000
        except (KeyError, ValueError, AssertionError):
            return self._baidu_json({"errno": 60000, "msg": "参数错误"})
        with self.lock:
            rows = [o for o in self.baidu_order_list
                    if start <= _baidu_time(o.get("create_time")) <= end]
        chunk = rows[(page - 1) * size:page * size]
        return self._baidu_json({"errno": 0, "msg": "success", "data": {
            "total_money": "-", "current_page": page, "page_size": size,
            "total_count": len(rows), "total_page": (len(rows) + size - 1) // size,
            "data": chunk}})

    def _h_baidu_find_refund(self, req):
        err = self._baidu_token_error(req)
        if err:
            return err
        tp = req.params.get("tpOrderId")
        if not tp:
            return self._baidu_json({"errno": 60000, "msg": "参数错误"})
        batches = _value(self.baidu_refunds.get(tp, []), req)
        return self._baidu_json({"errno": 0, "msg": "success", "data": batches})

    def _h_baidu_tp_token(self, req):
        p = req.params
        if not p.get("client_id") or not p.get("ticket"):
            return self._baidu_json({"errno": 60000, "msg": "参数错误"})
        self.baidu_tickets.append(p["ticket"])
        return self._baidu_json({"errno": 0, "msg": "success", "data": {
            "access_token": self.baidu_tp_token, "expires_in": 2592000, "scope": "smartapp_tp"}})

    def _tp_token_error(self, req):
        """Calls made with the TP's token (oauth, retrieve code) need the one issued."""
        if req.params.get("access_token") != self.baidu_tp_token:
            return self._baidu_json({"error_code": 110,
                                     "error_msg": "Access token invalid or no longer valid"})
        return None

    def _issue_app_token(self):
        n = next(self._serial)
        life = self.baidu_app_expires_in
        ans = {"access_token": "mock-app-token-%d" % n, "refresh_token": "mock-refresh-%d" % n,
               "expires_in": life(n) if callable(life) else life}
        with self.lock:
            self.baidu_refresh_tokens.add(ans["refresh_token"])
            if self.baidu_tokens is not None:
                self.baidu_tokens.add(ans["access_token"])
            self.baidu_issued.append(ans)
        return self._baidu_json(ans)

    def _h_baidu_app_token(self, req):
        err = self._tp_token_error(req)
        if err:
            return err
        p = req.params
        grant = p.get("grant_type")
        if grant == "app_to_tp_authorization_code":
            with self.lock:
                ok = bool(p.get("code")) and (self.baidu_codes is None or p["code"] in self.baidu_codes)
                if ok and self.baidu_codes is not None:
                    self.baidu_codes.discard(p["code"])
            if ok:
                return self._issue_app_token()
            return self._baidu_json({"error": "invalid_grant", "error_description": "Invalid authorization code"})
        if grant == "app_to_tp_refresh_token":
            with self.lock:
                ok = p.get("refresh_token") in self.baidu_refresh_tokens
                self.baidu_refresh_tokens.discard(p.get("refresh_token"))
            if ok:
                return self._issue_app_token()
            return self._baidu_json({"error": "invalid_grant", "error_description": "refresh token has been used"})
        return self._baidu_json({"error": "unsupported_grant_type",
                                 "error_description": "The authorization grant type is not supported"})

    def _h_baidu_retrieve_code(self, req):
        err = self._tp_token_error(req)
        if err:
            return err
        app_id = req.params.get("app_id")
        if not app_id:
            return self._baidu_json({"errno": 60000, "msg": "参数错误"})
        if app_id in self.baidu_unauthorized_apps:
            return self._baidu_json({"errno": 50032, "msg": "app has not authorized the tp"})
        code = "mock-code-%d" % next(self._serial)
        with self.lock:
            if self.baidu_codes is not None:
                self.baidu_codes.add(code)
        return self._baidu_json({"errno": 0, "msg": "success",
                                 "data": {"authorization_code": code, "expires_in": 60}})

    def _baidu_table(self, req, table, errno, msg):
        err = self._baidu_token_error(req)
        if err:
            return err
        data = self._per_token(table, req)
        if data is None:
            return self._baidu_json({"errno": errno, "msg": msg})
        return self._baidu_json({"errno": 0, "msg": "success", "data": data})

    def _h_baidu_getbindservice(self, req):
        return self._baidu_table(req, self.baidu_bindservice, 60008, "支付服务不存在")

    def _h_baidu_pay_service_audit(self, req):
        return self._baidu_table(req, self.baidu_pay_service_audit, 60008, "支付服务不存在")

    def _h_baidu_account_audit(self, req):
        return self._baidu_table(req, self.baidu_account_audit, 60006, "支付账号审核信息不存在")

    def _h_baidu_getmsg(self, req):
        err = self._baidu_token_error(req)
        return err or self._baidu_json({"errno": 0, "msg": "success", "data": []})

    # -- default handlers: Alipay --

    def _alipay_error(self, method, code, msg, sub_code, sub_msg):
        """An unsigned error answer, under <method>_response (or
        error_response when there is no method), as the gateway gives them."""
        key = response_key(method) if method else "error_response"
        return Answer(200, _jbytes({key: {"code": code, "msg": msg, "sub_code": sub_code,
                                          "sub_msg": sub_msg}}))

    def _h_alipay(self, req):
        p = req.params
        method = p.get("method")
        if not method:
            return self._alipay_error(None, "40001", "Missing Required Arguments",
                                      "isv.missing-method", "缺少方法名参数")
        if self.alipay_app_keys:
            pem = self.alipay_app_keys.get(p.get("app_id"))
            if pem is None:
                return self._alipay_error(method, "40002", "Invalid Arguments",
                                          "isv.invalid-app-id", "无效的AppID参数")
            if not verify_alipay_request(req, pem):
                return self._alipay_error(method, "40002", "Invalid Arguments", "isv.invalid-signature",
                                          "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
        try:
            biz = json.loads(p.get("biz_content") or "{}")
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            return self._alipay_error(method, "40002", "Invalid Arguments",
                                      "isv.invalid-parameter", "参数无效")
        if method == "alipay.trade.query":
            obj = self._trade_for(biz, req)
        elif method == "alipay.trade.fastpay.refund.query":
            entry = self.alipay_refunds.get(biz.get("out_request_no"))
            # The real gateway answers 10000 without refund fields for an unknown refund.
            obj = {"code": "10000", "msg": "Success", "out_trade_no": biz.get("out_trade_no", "")}
            if entry is not None:
                obj.update(_value(entry, req))
        else:
            return Answer(200, _jbytes({"error_response": {
                "code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-method",
                "sub_msg": "不存在的方法名"}}))
        return Answer(200, self.alipay_response(method, obj, self.alipay_sign_mode))

    def _trade_for(self, biz, req):
        """The query answer object for biz_content's out_trade_no (or, when
        only trade_no is given, the entry carrying that trade_no)."""
        no = biz.get("out_trade_no")
        if not no and biz.get("trade_no"):
            for k, e in list(self.alipay_trades.items()):
                if _value(e, req).get("trade_no") == biz["trade_no"]:
                    no = k
                    break
            else:
                obj = self.trade_query_object(None, req)
                obj["trade_no"] = biz["trade_no"]
                return obj
        return self.trade_query_object(no or "", req)

    # -- default handler: gateway --

    def _h_gateway_query(self, req):
        p = req.params
        for inner in ("content", "biz_content"):
            try:
                extra = json.loads(p.get(inner) or "null")
            except ValueError:
                extra = None
            if isinstance(extra, dict):
                p.update({k: v if isinstance(v, str) else _dumps(v) for k, v in extra.items()})
        no = p.get("out_trade_no")
        entry = self.gateway_trades.get(no) if no else None
        if entry is None:
            obj = {"code": "12002", "msg": "未找到订单信息"}
        else:
            obj = {"out_trade_no": no}
            obj.update(_value(entry, req))
        if self.gateway_secret:
            obj["sign_type"] = "MD5"
            obj["sign"] = gateway_md5(obj, self.gateway_secret, self.gateway_sign_mode)
        return Answer(200, _jbytes(obj))


class MockTestCase(unittest.TestCase):
    """A daemon per test, pointed at a mock OpenAPI per test. A subclass
    gives daemon_config(mock); tearDown checks a clean stop and that the
    mock itself did not fail."""

    def daemon_config(self, mock):
        raise NotImplementedError

    def setUp(self):
        self.mock = MockOpenAPI().start()
        self.addCleanup(self.mock.stop)
        self.d = Daemon(self.daemon_config(self.mock))
        self.addCleanup(self.d.kill)
        self.d.start()

    def tearDown(self):
        if self.d.proc and self.d.proc.poll() is None:
            self.assertEqual(self.d.stop(), 0, self.d.logtext())
        self.assertEqual(self.mock.errors, [])
