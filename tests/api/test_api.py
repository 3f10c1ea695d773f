"""The read API over real HTTP, against the real Redis the harness starts."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis
from aiohttp import ClientSession, web
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from freshet.api.app import create_app
from freshet.api.auth import bearer_ok
from freshet.api.lists import generation_from, user_partition
from freshet.services.ports import free_port, port_open
from freshet.settings import Settings
from schemas.codec import encode
from schemas.recommendation import Recommendation, RecommendedItem
from streams.redis_io.keyspace import Keyspace

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "json" / "recommendation.v1.json").read_text())
LIST_ROUTE = "/v1/users/{user_id}/recommendations"
TOKEN = "s3cret-token-value-1234"

Serve = Callable[..., Awaitable[str]]


def _settings(redis_url: str, tmp_path: Path, **changes: Any) -> Settings:
    return Settings.from_env(
        {}, redis_url=redis_url, home=tmp_path, topic_partitions=4, list_size=5, **changes
    )


def _stored(user_id: str, items: tuple[str, ...] = ("i9", "i7")) -> Recommendation:
    return Recommendation(
        user_id=user_id,
        items=tuple(
            RecommendedItem(item, 1.0 - n / 10, "personalised") for n, item in enumerate(items)
        ),
        strategy="personalised",
        model_version="v7",
        source_event_id="e-42",
        event_ts=1_700_000_000_000,
        published_ts=1_700_000_000_015,
    )


def _store_list(client: redis.Redis, user_id: str, generation: str = "g1") -> bytes:
    raw = encode(_stored(user_id))
    keys = Keyspace("fr", generation)
    client.hset(keys.user(user_partition(user_id, 4), user_id), "r", raw)
    return raw


def _store_trending(client: redis.Redis) -> None:
    keys = Keyspace("fr", "g1")
    client.zadd(keys.trend(0), {"hot": 5.0, "warm": 2.0})
    client.zadd(keys.trend(3), {"hot": 1.0, "mild": 3.0})
    for p in (0, 3):
        client.hset(keys.partition_meta(p), "trend_ref", 1_700_000_000_000)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start ``create_app(settings)`` on a free loopback port; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(settings: Settings, **kwargs: Any) -> str:
        runner = web.AppRunner(create_app(settings, **kwargs))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    async with (
        ClientSession() as session,
        session.get(URL(url, encoded=True), headers=headers) as resp,
    ):
        return resp.status, await resp.read(), resp.headers


@pytest.mark.services
async def test_known_user_gets_the_stored_list_unchanged(
    serve: Serve, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    raw = _store_list(redis_client, "alice")
    base = await serve(_settings(redis_url, tmp_path))
    status, body, headers = await _get(f"{base}/v1/users/alice/recommendations")
    assert status == 200
    assert body == raw
    assert headers["Content-Type"].startswith("application/json")
    jsonschema.validate(json.loads(body), SCHEMA)


@pytest.mark.services
async def test_ids_with_a_slash_are_read_encoded_or_not(
    serve: Serve, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    raw = _store_list(redis_client, "shop/u-1")
    base = await serve(_settings(redis_url, tmp_path))
    for path in ("shop%2Fu-1", "shop/u-1"):
        status, body, _ = await _get(f"{base}/v1/users/{path}/recommendations")
        assert (status, body) == (200, raw)


@pytest.mark.services
async def test_unknown_user_and_user_without_a_list_get_cold_start_from_trending(
    serve: Serve, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    _store_trending(redis_client)
    keys = Keyspace("fr", "g1")
    # A user with state but no list yet (the worker has not refreshed them).
    redis_client.hset(keys.user(user_partition("bob", 4), "bob"), "s", b"{}")
    base = await serve(_settings(redis_url, tmp_path))
    for user in ("nobody", "bob"):
        before = int(time.time() * 1000)
        status, body, _ = await _get(f"{base}/v1/users/{user}/recommendations")
        assert status == 200
        obj = json.loads(body)
        jsonschema.validate(obj, SCHEMA)
        assert obj["user_id"] == user
        assert obj["strategy"] == "cold_start"
        assert obj["model_version"] is None and obj["source_event_id"] is None
        assert obj["event_ts"] is None
        assert before <= obj["published_ts"] <= int(time.time() * 1000)
        # Merged over partitions 0 and 3: hot 5+1, mild 3, warm 2.
        assert [it["item_id"] for it in obj["items"]] == ["hot", "mild", "warm"]
        assert [it["score"] for it in obj["items"]] == [6.0, 3.0, 2.0]
        assert {it["reason"] for it in obj["items"]} == {"trending"}


@pytest.mark.services
async def test_cold_start_with_no_trending_is_an_empty_list(
    serve: Serve, redis_url: str, tmp_path: Path
) -> None:
    base = await serve(_settings(redis_url, tmp_path))
    status, body, _ = await _get(f"{base}/v1/users/fresh-user/recommendations")
    assert status == 200
    obj = json.loads(body)
    assert (obj["strategy"], obj["items"]) == ("cold_start", [])


@pytest.mark.services
async def test_the_generation_pointer_decides_where_lists_are_read(
    serve: Serve, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    _store_list(redis_client, "carol", "g1")
    in_g2 = encode(_stored("carol", ("z1", "z2", "z3")))
    redis_client.hset(Keyspace("fr", "g2").user(user_partition("carol", 4), "carol"), "r", in_g2)
    base = await serve(_settings(redis_url, tmp_path), cache_ttl_s=0.0)
    url = f"{base}/v1/users/carol/recommendations"
    assert (await _get(url))[1] == encode(_stored("carol"))
    redis_client.set(Keyspace("fr").generation_pointer, "g2")
    assert (await _get(url))[1] == in_g2
    redis_client.set(Keyspace("fr").generation_pointer, "g2:{x}")  # not a generation name
    status, body, _ = await _get(url)
    assert status == 503 and json.loads(body)["error"] == "unavailable"


@pytest.mark.services
@pytest.mark.parametrize(
    "path",
    [
        "a%20b",  # space
        "a%3Ab",  # ':' would address another key
        "%7Bg1.p0%7D",  # hash-tag braces
        "%E2%9C%93",  # non-ASCII
        "x" * 129,  # too long
        "",  # empty
    ],
)
async def test_invalid_user_ids_are_refused_with_400(
    serve: Serve, redis_url: str, tmp_path: Path, path: str
) -> None:
    base = await serve(_settings(redis_url, tmp_path))
    status, body, _ = await _get(f"{base}/v1/users/{path}/recommendations")
    assert status == 400
    assert json.loads(body)["error"] == "invalid_user_id"


@pytest.mark.services
async def test_bearer_token_guards_everything_but_the_probes_and_is_never_logged(
    serve: Serve,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    raw = _store_list(redis_client, "alice")
    base = await serve(_settings(redis_url, tmp_path, api_token=TOKEN))
    url = f"{base}/v1/users/alice/recommendations"
    wrong = [
        None,
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
    ]
    for headers in wrong:
        status, body, resp_headers = await _get(url, headers)
        assert status == 401, headers
        assert json.loads(body)["error"] == "unauthorized"
        assert resp_headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN.encode() not in body
    for path in ("/metrics", "/openapi.json", "/no/such/route"):
        assert (await _get(base + path))[0] == 401
    status, body, _ = await _get(url, {"Authorization": f"Bearer {TOKEN}"})
    assert (status, body) == (200, raw)
    for probe in ("/healthz", "/readyz"):
        assert (await _get(base + probe))[0] == 200
    assert (await _get(base + "/metrics", {"Authorization": f"bearer {TOKEN}"}))[0] == 200
    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert TOKEN not in logged


def test_bearer_check() -> None:
    assert bearer_ok("Bearer abc", "abc")
    assert bearer_ok("bearer  abc ", "abc")
    assert not bearer_ok("Bearer abd", "abc")
    assert not bearer_ok("Bearer ab", "abc")
    assert not bearer_ok("Token abc", "abc")
    assert not bearer_ok("", "abc")
    assert not bearer_ok(None, "abc")
    assert not bearer_ok("Bearer ✓", "abc")  # non-ASCII must not raise


def test_generation_pointer_values() -> None:
    assert generation_from(None) == "g1"
    assert generation_from(b"g2") == "g2"
    assert generation_from(b"g2:x") is None
    assert generation_from(b"") is None


@pytest.mark.services
async def test_readyz_follows_redis_and_reads_fail_with_503(
    serve: Serve, redis_url: str, tmp_path: Path
) -> None:
    up = await serve(_settings(redis_url, tmp_path))
    status, body, _ = await _get(up + "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    dead = f"redis://127.0.0.1:{free_port()}/0"
    down = await serve(_settings(dead, tmp_path))
    assert (await _get(down + "/healthz"))[0] == 200  # alive, though not ready
    status, body, _ = await _get(down + "/readyz")
    assert status == 503 and json.loads(body)["error"] == "unavailable"
    status, body, _ = await _get(down + "/v1/users/alice/recommendations")
    assert status == 503 and json.loads(body)["error"] == "unavailable"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.services
async def test_metrics_count_requests_by_route_pattern_and_status(
    serve: Serve, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    _store_list(redis_client, "alice")
    base = await serve(_settings(redis_url, tmp_path))
    for path in ("alice", "alice", "someone-new", "bad%20id"):
        await _get(f"{base}/v1/users/{path}/recommendations")
    await _get(base + "/healthz")
    await _get(base + "/nothing-here")
    status, body, headers = await _get(base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    samples = _samples(text)

    def requests(route: str, code: str) -> float:
        key = ("freshet_api_requests_total", (("route", route), ("status", code)))
        return samples.get(key, 0.0)

    assert requests(LIST_ROUTE, "200") == 3
    assert requests(LIST_ROUTE, "400") == 1
    assert requests("/healthz", "200") == 1
    assert requests("unmatched", "404") == 1
    hist = ("freshet_api_request_seconds_count", (("route", LIST_ROUTE),))
    assert samples[hist] == 4
    assert samples[("freshet_api_lists_total", (("source", "stored"),))] == 2
    assert samples[("freshet_api_lists_total", (("source", "cold_start"),))] == 1
    # Labels carry route patterns, never the ids that were asked for.
    assert "alice" not in text and "someone-new" not in text


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.services
async def test_openapi_document_matches_the_app_and_the_contract(
    serve: Serve, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    _store_list(redis_client, "alice")
    _store_trending(redis_client)
    app_settings = _settings(redis_url, tmp_path)
    base = await serve(app_settings)
    status, body, headers = await _get(base + "/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    spec = json.loads(body)
    assert spec["openapi"] == "3.1.0"
    assert {"title", "version"} <= spec["info"].keys()
    # Every route the app serves is documented, and nothing else.
    app = create_app(app_settings)
    served = {r.canonical for r in app.router.resources()}
    assert set(spec["paths"]) == served
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert method in ("get", "post"), path
            assert op["responses"] and all(code.isdigit() for code in op["responses"])
    # The list schema is the contract's, verbatim, and every reference resolves.
    components = spec["components"]["schemas"]
    assert components["Recommendation"] == SCHEMA
    for schema in components.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for ref in _refs(spec["paths"]) + _refs(spec["components"]["responses"]):
        assert ref.startswith("#/components/")
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node[part]
    list_op = spec["paths"][LIST_ROUTE]["get"]
    ok = list_op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok == "#/components/schemas/Recommendation"
    # Real answers validate against the documented schemas.
    validator = jsonschema.Draft202012Validator(components["Recommendation"])
    for user in ("alice", "nobody"):
        validator.validate(json.loads((await _get(f"{base}/v1/users/{user}/recommendations"))[1]))
    error = jsonschema.Draft202012Validator(components["Error"])
    error.validate(json.loads((await _get(f"{base}/v1/users/a%20b/recommendations"))[1]))
    status_schema = jsonschema.Draft202012Validator(components["Status"])
    status_schema.validate(json.loads((await _get(base + "/readyz"))[1]))


@pytest.mark.services
def test_freshet_api_command_serves_and_keeps_the_token_out_of_its_output(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    raw = _store_list(redis_client, "alice")
    port = free_port()
    env = os.environ | {
        "FRESHET_REDIS_URL": redis_url,
        "FRESHET_HOME": str(tmp_path),
        "FRESHET_TOPIC_PARTITIONS": "4",
        "FRESHET_API_TOKEN": TOKEN,
        "FRESHET_LOG_LEVEL": "DEBUG",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "freshet.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open(port) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{port}/v1/users/alice/recommendations"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.read() == raw
        wrong = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}-no"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(wrong, timeout=10)
        assert failed.value.code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    text = output.decode()
    assert "bearer token required" in text
    assert "/v1/users/alice/recommendations" in text  # the access log is on
    assert TOKEN not in text
