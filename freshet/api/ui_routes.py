"""The web view's routes: a static page at ``/ui`` and the data and streams it reads.

The page (``freshet/ui/static``) is a shell with no data and no secret in it, served
without auth like a sign-in form. Everything it shows comes from ``/ui/api/*``, which
the API's bearer-token middleware guards like every other route: the page sends the
token that the person typed, kept in the tab's ``sessionStorage``, in an
``Authorization`` header on each request, its two server-sent-event streams included
(read with ``fetch``, since ``EventSource`` cannot send headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from freshet.api.ui_sources import OverviewHub, StateReader, latest_letters, watch_lists
from freshet.settings import Settings
from freshet.ui.views import decode_list_bytes, list_change, list_items, user_view
from schemas.codec import ID_RE

log = logging.getLogger("freshet.api.ui")

STATIC_FILES = {
    "app.js": "text/javascript",
    "app.css": "text/css",
}
KEEPALIVE_S = 15.0
DLQ_SHOWN = 50
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # Only the page's own script and style run; nothing can be framed or loaded elsewhere.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

HUB_KEY = web.AppKey("ui_hub", OverviewHub)
STATE_KEY = web.AppKey("ui_state", StateReader)
SETTINGS_KEY = web.AppKey("ui_settings", Settings)
STREAMS_KEY = web.AppKey("ui_streams", set[asyncio.Task[Any]])


def is_public(path: str) -> bool:
    """The page shell and its static files: no data, no secret, so no token needed."""
    return path in ("/ui", "/ui/") or (
        path.startswith("/ui/static/") and path.removeprefix("/ui/static/") in STATIC_FILES
    )


def add_ui(app: web.Application, settings: Settings, client: Any) -> None:
    """Add the page, its data routes and its streams to the API application."""
    hub = OverviewHub(settings)
    app[HUB_KEY] = hub
    app[STATE_KEY] = StateReader(settings, client)
    app[SETTINGS_KEY] = settings
    app[STREAMS_KEY] = set()
    app.router.add_get("/ui", _page)
    app.router.add_get("/ui/static/{name}", _static)
    app.router.add_get("/ui/api/overview", _overview_stream)
    app.router.add_get("/ui/api/users/{user_id:.*}/stream", _user_stream)
    app.router.add_get("/ui/api/users/{user_id:.*}", _user)
    app.router.add_get("/ui/api/items/{item_id:.*}", _item)
    app.router.add_get("/ui/api/dlq", _dlq)
    app.router.add_post("/ui/api/dlq/redrive", _redrive)

    async def end_streams(app: web.Application) -> None:
        # Open pages would otherwise hold a graceful shutdown for its whole timeout.
        for task in app[STREAMS_KEY]:
            task.cancel()

    async def close_hub(_app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(close_hub)


def _asset(name: str) -> bytes:
    return resources.files("freshet.ui").joinpath("static", name).read_bytes()


async def _page(_request: web.Request) -> web.Response:
    return web.Response(
        body=_asset("index.html"), content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.Response(
        body=_asset(name), content_type=STATIC_FILES[name], charset="utf-8", headers=PAGE_HEADERS
    )


def _json(obj: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _invalid(kind: str) -> web.Response:
    return _json(
        {"error": f"invalid_{kind}_id", "detail": "ids match [A-Za-z0-9_.@+=/-]{1,128}"}, 400
    )


async def _events(request: web.Request) -> web.StreamResponse:
    """Start a server-sent-event response; the stream ends when the server shuts down."""
    task = asyncio.current_task()
    if task is not None:
        streams = request.app[STREAMS_KEY]
        streams.add(task)
        task.add_done_callback(streams.discard)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, data: bytes, event: str = "message") -> None:
    await response.write(b"event: " + event.encode() + b"\ndata: " + data + b"\n\n")


async def _overview_stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    response = await _events(request)
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        async with hub.subscribe() as queue:
            await _send(response, hub.snapshot(with_history=True), "history")
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                await _send(response, message)
    return response


async def _user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    if ID_RE.fullmatch(user_id) is None:
        return _invalid("user")
    try:
        state, latest = await request.app[STATE_KEY].user(user_id)
    except (RedisError, OSError) as exc:
        return _json({"error": "unavailable", "detail": type(exc).__name__}, 503)
    return _json(user_view(user_id, state, latest, "stored" if latest else "none"))


async def _user_stream(request: web.Request) -> web.StreamResponse:
    """Each new list of the user, with how it differs from the one before."""
    user_id = request.match_info["user_id"]
    if ID_RE.fullmatch(user_id) is None:
        return _invalid("user")
    settings = request.app[SETTINGS_KEY]
    reader = request.app[STATE_KEY]
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)

    async def follow() -> None:
        from streams.kafka_io.topic_reader import TopicMissing

        lists: AsyncIterator[dict[str, Any]] = watch_lists(settings, user_id)
        try:
            async for rec in lists:
                await queue.put(rec)
            note = "the list stream ended"
        except TopicMissing:
            note = "no list topic yet: has a worker run with this prefix?"
        except Exception as exc:  # the page says so and reconnects; no detail leaks
            note = f"the list stream stopped ({type(exc).__name__})"
        await queue.put({"note": note})

    response = await _events(request)
    task = asyncio.create_task(follow())
    try:
        _, latest = await reader.user(user_id)
        before = list_items(decode_list_bytes(latest))
        await response.write(b": watching\n\n")
        while True:
            try:
                rec = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if "note" in rec:
                await _send(response, orjson.dumps(rec), "note")
                break
            after = list_items(rec)
            state, _ = await reader.user(user_id)
            body = {
                "list": rec,
                "change": list_change(before, after),
                "events": user_view(user_id, state, None, "")["events"],
            }
            before = after
            await _send(response, orjson.dumps(body), "list")
    except (ConnectionResetError, asyncio.CancelledError, RedisError, OSError):
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return response


async def _item(request: web.Request) -> web.Response:
    item_id = request.match_info["item_id"]
    if ID_RE.fullmatch(item_id) is None:
        return _invalid("item")
    try:
        view = await request.app[STATE_KEY].item(item_id)
    except (RedisError, OSError) as exc:
        return _json({"error": "unavailable", "detail": type(exc).__name__}, 503)
    return _json(view)


async def _dlq(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    return _json(await asyncio.to_thread(latest_letters, settings, DLQ_SHOWN))


async def _redrive(request: web.Request) -> web.Response:
    """Re-drive dead letters as ``freshet dlq redrive`` does: fixes, reasons, transforms."""
    from freshet.ops.dead_letters import TRANSFORMS, parse_fix_file
    from schemas.dead_letter import DEAD_LETTER_REASONS

    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _json({"error": "invalid_body", "detail": "a JSON object is required"}, 400)
    if not isinstance(body, dict):
        return _json({"error": "invalid_body", "detail": "a JSON object is required"}, 400)
    fixes_in, reasons, transforms = (body.get(k) or [] for k in ("fixes", "reasons", "transforms"))
    if not all(isinstance(x, list) for x in (fixes_in, reasons, transforms)):
        return _json({"error": "invalid_body", "detail": "fixes, reasons, transforms: lists"}, 400)
    bad = [r for r in reasons if r not in DEAD_LETTER_REASONS] + [
        t for t in transforms if t not in TRANSFORMS
    ]
    if bad or (transforms and not reasons) or not (fixes_in or reasons):
        return _json(
            {
                "error": "invalid_body",
                "detail": "give fixes or reasons; transforms need reasons; "
                f"reasons: {', '.join(DEAD_LETTER_REASONS)}; transforms: {', '.join(TRANSFORMS)}",
            },
            400,
        )
    fixes, problems = parse_fix_file(orjson.dumps(f).decode() for f in fixes_in)
    if problems:
        detail = "; ".join(f"fix {n}: {p}" for n, p in problems[:5])
        return _json({"error": "invalid_fix", "detail": detail}, 400)
    settings = request.app[SETTINGS_KEY]
    outcome = await asyncio.to_thread(
        _run_redrive,
        settings,
        fixes,
        frozenset(reasons),
        tuple(transforms),
        bool(body.get("dry_run")),
    )
    plan = outcome.plan
    log.info("web view re-drive: %d valid, %d delivered", len(plan.to_send), outcome.delivered)
    return _json(
        {
            "dry_run": bool(body.get("dry_run")),
            "letters": plan.letters,
            "selected": plan.selected,
            "valid_from_fixes": plan.sent_by("fix"),
            "valid_originals": plan.sent_by("original"),
            "still_refused": [
                {
                    "source_topic": letter.source_topic,
                    "source_partition": letter.source_partition,
                    "source_offset": letter.source_offset,
                    "reason": refusal.reason,
                    "detail": refusal.detail[:300],
                }
                for letter, refusal in plan.refused[:20]
            ],
            "unmatched_fixes": len(plan.unmatched_fixes),
            "delivered": outcome.delivered,
            "failed": outcome.failed,
        }
    )


def _run_redrive(
    settings: Settings,
    fixes: list[Any],
    reasons: frozenset[str],
    transforms: tuple[str, ...],
    dry_run: bool,
) -> Any:
    from freshet.ops.dead_letter_io import read_letters, redrive
    from streams.kafka_io.topic_reader import TopicMissing

    try:
        letters = [letter for _, _, letter in read_letters(settings, "freshet-ui-dlq").letters]
    except TopicMissing:
        letters = []
    return redrive(
        settings,
        letters,
        fixes=fixes,
        reasons=reasons or None,
        resend_originals=bool(reasons),
        transforms=transforms,
        dry_run=dry_run,
    )
