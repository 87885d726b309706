"""Load clients: voters walking the verification flow over real HTTP and websockets
(aiohttp), page hammers, and fleets of idle websockets waiting for a push.

Every loop is bounded twice: a wall-clock deadline and a count; every network wait has
a timeout. Only loopback URLs are ever used (the harness builds them from free ports).
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import aiohttp

from benchmarks.fixtures import Voter
from benchmarks.infra import PASSWORD
from benchmarks.stats import Samples

FLOW_TIMEOUT = 60.0
# The step a voter's flow is at, named when a flow times out: a holder set in the voter's
# context (the flow runs in a task of its own, with a copy of that context).
_step: contextvars.ContextVar[list[str]] = contextvars.ContextVar("step")


def _at(step: str) -> None:
    holder = _step.get(None)
    if holder is not None:
        holder[0] = step


WS_TIMEOUT = 30.0
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_VERIFY_PATH = re.compile(r"^/2fa/v/([0-9a-f-]{36})/$")


class FlowError(Exception):
    """A step of a flow got something other than what a working site answers."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step


@dataclass(frozen=True)
class Site:
    url: str  # http://127.0.0.1:PORT
    question_id: int
    question_text: str
    codes_url: str  # the Verify double's side door

    @property
    def poll_path(self) -> str:
        return f"/polls/{self.question_id}/"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")


def new_client(*, limit: int = 4) -> aiohttp.ClientSession:
    """A browser: its own cookies (loopback IPs need the unsafe jar) and connections."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=WS_TIMEOUT),
    )


async def _fetch(
    client: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    step: str,
    expect: int,
    data: dict[str, str] | None = None,
) -> tuple[str, str, float]:
    """(body, Location, seconds) of one request; FlowError unless the status is ``expect``."""
    _at(step)
    started = time.perf_counter()
    async with client.request(method, url, data=data, allow_redirects=False) as response:
        body = await response.text()
        elapsed = time.perf_counter() - started
        if response.status != expect:
            said = _said(body)
            raise FlowError(
                step, f"HTTP {response.status}, expected {expect}" + (f": {said}" if said else "")
            )
        return body, response.headers.get("Location", ""), elapsed


# What a refusal or a form error says (the page's error sentences), for a failed step's message.
_SAID = re.compile(r'class="[^"]*(?:form-error|errorlist|status-failed)[^"]*"[^>]*>(.*?)</', re.S)


def _said(body: str) -> str:
    sentences = (re.sub(r"<[^>]+>|\s+", " ", found).strip() for found in _SAID.findall(body))
    return html.unescape("; ".join(dict.fromkeys(s for s in sentences if s)))[:300]


def _token(body: str, step: str) -> str:
    match = _CSRF.search(body)
    if match is None:
        raise FlowError(step, "no CSRF token on the page")
    return match.group(1)


def _path(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def read_code(client: aiohttp.ClientSession, site: Site, number: str) -> str:
    """The code the double sent to ``number`` (as the voter reads the SMS)."""
    for _ in range(100):
        async with client.get(f"{site.codes_url}/code?{urlencode({'to': number})}") as response:
            if response.status == 200:
                return await response.text()
        await asyncio.sleep(0.02)
    raise FlowError("code", "the double sent no code to this number")


async def _login(client: aiohttp.ClientSession, site: Site, voter: Voter) -> str:
    """Log in with ``next`` = the poll; return the path the poll redirects to, as a
    browser gets there: Pollstr's sign-in answers with it (two_factor.protection's
    ``first_stop``), the baseline's with the poll, which then redirects."""
    query = urlencode({"next": site.poll_path})
    body, _, _ = await _fetch(
        client, "GET", f"{site.url}/accounts/login/?{query}", step="login page", expect=200
    )
    form = {
        "username": voter.username,
        "password": PASSWORD,
        "next": site.poll_path,
        "csrfmiddlewaretoken": _token(body, "login page"),
    }
    _, location, _ = await _fetch(
        client, "POST", f"{site.url}/accounts/login/", step="login", expect=302, data=form
    )
    if _path(location) != site.poll_path:
        if urlsplit(location).query != urlencode({"next": site.poll_path}):
            raise FlowError("login", f"went to {location}, not the poll nor on its behalf")
        return _path(location)
    _, gate, _ = await _fetch(client, "GET", site.url + site.poll_path, step="gate", expect=302)
    return _path(gate)


# --- Pollstr ----------------------------------------------------------------------------


async def _ws_until(ws: aiohttp.ClientWebSocketResponse, status: str, step: str) -> float:
    """perf_counter() when a message showing ``status`` arrived."""
    _at(f"{step} (websocket)")
    marker = f'data-status="{status}"'
    deadline = time.monotonic() + WS_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FlowError(step, f"no '{status}' on the websocket within {WS_TIMEOUT:.0f} s")
        message = await ws.receive(timeout=remaining)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise FlowError(step, f"websocket ended ({message.type.name}, {message.data})")
        if marker in message.data:
            return time.perf_counter()
        if 'data-status="failed"' in message.data:
            raise FlowError(step, "the verification failed")


async def _pollstr_number(
    client: aiohttp.ClientSession, site: Site, voter: Voter, gate: str
) -> tuple[str, float]:
    """Open the number page the gate sent us to and submit the number:
    (verification id, seconds the submit took)."""
    body, _, _ = await _fetch(client, "GET", site.url + gate, step="number page", expect=200)
    form = {"number": voter.number, "csrfmiddlewaretoken": _token(body, "number page")}
    _, location, seconds = await _fetch(
        client, "POST", f"{site.url}/2fa/", step="number", expect=302, data=form
    )
    match = _VERIFY_PATH.match(_path(location))
    if match is None:
        raise FlowError("number", f"redirected to {location}, not a verification")
    return match.group(1), seconds


def _ws_connect(
    client: aiohttp.ClientSession, site: Site, path: str
) -> Awaitable[aiohttp.ClientWebSocketResponse]:
    return client.ws_connect(site.ws_url + path, origin=site.url, autoping=True, heartbeat=None)


Mark = Callable[[str], None]


def _no_mark(step: str) -> None:
    pass


async def pollstr_flow(
    client: aiohttp.ClientSession,
    site: Site,
    voter: Voter,
    s: Samples,
    mark: Mark = _no_mark,
) -> None:
    """login → number → code → back on the poll, as a browser with the websocket.
    ``mark(step)`` is called after each step (the cost trace counts between marks)."""
    gate = await _login(client, site, voter)
    mark("sign in (login page, login → the number page)")
    verification_id, number_seconds = await _pollstr_number(client, site, voter, gate)
    s.add("number", number_seconds)
    mark("number page + number submit")
    verify_path = f"/2fa/v/{verification_id}/"
    body, _, _ = await _fetch(client, "GET", site.url + verify_path, step="code page", expect=200)
    token = _token(body, "code page")
    async with await _ws_connect(client, site, f"/ws/2fa/{verification_id}/") as ws:
        await _ws_until(ws, "sent", "sent")
        mark("code page + websocket until 'sent' (the send task)")
        code = await read_code(client, site, voter.number)
        form = {"code": code, "csrfmiddlewaretoken": token}
        _, _, code_seconds = await _fetch(
            client, "POST", f"{site.url}{verify_path}code/", step="code", expect=302, data=form
        )
        s.add("code", code_seconds)
        mark("code submit")
        await _ws_until(ws, "verified", "verified")
        mark("until 'verified' (the check task)")
    _, location, _ = await _fetch(
        client, "GET", f"{site.url}{verify_path}complete/", step="complete", expect=302
    )
    await _poll_page(client, site, location)
    mark("completion + poll page (socket closed)")


async def _poll_page(client: aiohttp.ClientSession, site: Site, location: str) -> None:
    if _path(location) != site.poll_path:
        raise FlowError("back on the poll", f"sent to {location}, not the poll")
    body, _, _ = await _fetch(client, "GET", site.url + site.poll_path, step="poll", expect=200)
    if site.question_text not in body:
        raise FlowError("poll", "the poll page does not show the question")


async def pollstr_submit_to_sent(
    client: aiohttp.ClientSession, site: Site, voter: Voter, s: Samples
) -> None:
    """P1: submit the number, follow to the code page, open its websocket: the time
    from the submit to "sent" arriving on the socket."""
    gate = await _login(client, site, voter)
    body, _, _ = await _fetch(client, "GET", site.url + gate, step="number page", expect=200)
    form = {"number": voter.number, "csrfmiddlewaretoken": _token(body, "number page")}
    started = time.perf_counter()
    _, location, _ = await _fetch(
        client, "POST", f"{site.url}/2fa/", step="number", expect=302, data=form
    )
    match = _VERIFY_PATH.match(_path(location))
    if match is None:
        raise FlowError("number", f"redirected to {location}, not a verification")
    await _fetch(client, "GET", site.url + _path(location), step="code page", expect=200)
    async with await _ws_connect(client, site, f"/ws/2fa/{match.group(1)}/") as ws:
        arrived = await _ws_until(ws, "sent", "sent")
    s.add("submit_to_sent", arrived - started)


# --- the synchronous baseline -----------------------------------------------------------


async def _baseline_number(
    client: aiohttp.ClientSession, site: Site, voter: Voter, gate: str
) -> tuple[str, float]:
    body, _, _ = await _fetch(client, "GET", site.url + gate, step="number page", expect=200)
    form = {
        "number": voter.number,
        "next": site.poll_path,
        "csrfmiddlewaretoken": _token(body, "number page"),
    }
    _, location, seconds = await _fetch(
        client, "POST", f"{site.url}/2fa/number/", step="number", expect=302, data=form
    )
    return _path(location), seconds


async def baseline_flow(
    client: aiohttp.ClientSession, site: Site, voter: Voter, s: Samples
) -> None:
    gate = await _login(client, site, voter)
    code_page, number_seconds = await _baseline_number(client, site, voter, gate)
    s.add("number", number_seconds)
    body, _, _ = await _fetch(client, "GET", site.url + code_page, step="code page", expect=200)
    code = await read_code(client, site, voter.number)
    form = {"code": code, "next": site.poll_path, "csrfmiddlewaretoken": _token(body, "code page")}
    _, location, code_seconds = await _fetch(
        client, "POST", f"{site.url}/2fa/code/", step="code", expect=302, data=form
    )
    s.add("code", code_seconds)
    await _poll_page(client, site, location)


async def baseline_submit_to_sent(
    client: aiohttp.ClientSession, site: Site, voter: Voter, s: Samples
) -> None:
    """P1's baseline: the voter knows the code is sent when the submit's answer comes."""
    gate = await _login(client, site, voter)
    _, seconds = await _baseline_number(client, site, voter, gate)
    s.add("submit_to_sent", seconds)


# --- many voters --------------------------------------------------------------------------

Flow = Callable[[aiohttp.ClientSession, Site, Voter, Samples], Awaitable[None]]


async def run_voters(
    flow: Flow,
    site: Site,
    pool: list[Voter],
    *,
    voters: int,
    duration: float,
    max_flows: int,
    name: str = "flows",
) -> Samples:
    """``voters`` concurrent voters, each looping ``flow`` with a fresh account and
    browser until ``duration`` has passed or it completed ``max_flows``."""
    started = time.perf_counter()
    samples = Samples(started=started)
    deadline = time.monotonic() + duration

    async def voter() -> None:
        for _ in range(max_flows):
            if time.monotonic() >= deadline or not pool:
                return
            account = pool.pop()
            flow_started = time.perf_counter()
            where = ["start"]
            _step.set(where)
            async with new_client() as client:
                try:
                    await asyncio.wait_for(flow(client, site, account, samples), FLOW_TIMEOUT)
                except FlowError as error:
                    samples.count(f"error: {error}")
                    continue
                except (TimeoutError, aiohttp.ClientError) as error:
                    # Which step was waiting: a timeout says nothing else.
                    samples.count(f"error: {type(error).__name__} at {where[0]}")
                    continue
            samples.add(name, time.perf_counter() - flow_started)
            samples.count(name)

    await asyncio.gather(*(voter() for _ in range(voters)))
    samples.elapsed = time.perf_counter() - started
    return samples


# --- pages --------------------------------------------------------------------------------


async def page_load(
    url: str,
    session_keys: Sequence[str],
    *,
    duration: float,
    max_requests: int,
    expect_text: str,
) -> Samples:
    """One client per session key, each GETting ``url`` back to back (keep-alive) until
    ``duration`` or ``max_requests`` each. Redirects are not followed: a gate that turns
    the client away counts as non-2xx."""
    samples = Samples()
    deadline = time.monotonic() + duration
    started = time.perf_counter()

    async def client_loop(session_key: str) -> None:
        async with aiohttp.ClientSession(
            cookies={"sessionid": session_key},
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=WS_TIMEOUT),
        ) as client:
            for _ in range(max_requests):
                if time.monotonic() >= deadline:
                    return
                t0 = time.perf_counter()
                try:
                    async with client.get(url, allow_redirects=False) as response:
                        body = await response.text()
                        status = response.status
                except (TimeoutError, aiohttp.ClientError) as error:
                    samples.count(f"error: {type(error).__name__}")
                    continue
                samples.add("request", time.perf_counter() - t0)
                if 200 <= status < 300 and expect_text in body:
                    samples.count("ok")
                else:
                    samples.count("non2xx")

    await asyncio.gather(*(client_loop(key) for key in session_keys))
    samples.elapsed = time.perf_counter() - started
    return samples


# --- idle sockets waiting for a push -------------------------------------------------------


@dataclass
class SocketFleet:
    """Many open websockets, each with a reader that stamps every message's arrival."""

    arrivals: list[list[float]] = field(default_factory=list)
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)
    # Which of the URLs each socket opened: sockets are kept in the order their handshakes
    # completed, not the URLs' order, and a refused URL has no socket.
    url_indexes: list[int] = field(default_factory=list)
    first_sizes: list[int] = field(default_factory=list)
    refused: int = 0
    _readers: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    async def open(
        self,
        urls: Sequence[str],
        *,
        origin: str | None = None,
        cookies: Sequence[str] | None = None,
        parallel: int = 50,
        timeout: float = 600.0,
        greeting: bool = True,
    ) -> None:
        """Connect one socket per URL (``cookies[i]`` as its session); with ``greeting``
        wait for the first message each server sends on connect."""
        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=WS_TIMEOUT),
        )
        gate = asyncio.Semaphore(parallel)

        async def connect(index: int) -> None:
            headers = {"Cookie": f"sessionid={cookies[index]}"} if cookies else {}
            async with gate:
                try:
                    ws = await self._session.ws_connect(
                        urls[index], origin=origin, headers=headers, heartbeat=None
                    )
                except aiohttp.ClientError:
                    self.refused += 1
                    return
            slot = len(self.sockets)
            self.sockets.append(ws)
            self.url_indexes.append(index)
            self.arrivals.append([])
            self._readers.append(asyncio.create_task(self._read(ws, slot)))

        await asyncio.wait_for(
            asyncio.gather(*(connect(i) for i in range(len(urls)))), timeout=timeout
        )
        if greeting:
            await self.wait_for_all(after=0.0, timeout=timeout)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, slot: int) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                if not self.arrivals[slot]:
                    self.first_sizes.append(len(message.data.encode()))
                self.arrivals[slot].append(time.perf_counter())

    async def wait_for_all(self, *, after: float | Sequence[float], timeout: float) -> list[float]:
        """Seconds from ``after`` (one instant, or one per URL given to ``open``, in that
        order) to each socket's first message past it; sockets that got nothing within
        ``timeout`` are left out."""
        if isinstance(after, float):
            starts = [after] * len(self.arrivals)
        else:
            starts = [after[self.url_indexes[slot]] for slot in range(len(self.arrivals))]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._first_after(i, starts[i]) is not None for i in range(len(starts))):
                break
            await asyncio.sleep(0.01)
        latencies = [self._first_after(i, starts[i]) for i in range(len(starts))]
        return [value - starts[i] for i, value in enumerate(latencies) if value is not None]

    def _first_after(self, slot: int, start: float) -> float | None:
        return next((stamp for stamp in self.arrivals[slot] if stamp > start), None)

    def alive(self) -> int:
        return sum(1 for ws in self.sockets if not ws.closed)

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
