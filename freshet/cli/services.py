"""``freshet services``: start, stop and inspect the local Kafka broker and Redis.

The services run detached under ``<home>/services/`` and outlive the command; their
addresses go to the endpoints file, which every other ``freshet`` command reads when
no Kafka or Redis address is given.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from freshet.cli.context import settings_of

if TYPE_CHECKING:
    from rich.console import Console

    from freshet.services.kafka_local import LocalKafka
    from freshet.services.redis_local import LocalRedis

services_app = typer.Typer(
    help="Local Kafka (KRaft) broker and Redis server for development and demos.",
    no_args_is_help=True,
)

JarCache = Annotated[
    Path | None,
    typer.Option(
        envvar="FRESHET_SERVICES_JAR_CACHE",
        help="Folder whose kafka/<version>/lib holds the broker jars (default: the home dir).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(services_app, name="services")


def _dir(home: Path) -> Path:
    return home / "services"


def _kafka(
    home: Path, jar_cache: Path | None, port: int = 0, partitions: int = 4, heap: str = "768m"
) -> LocalKafka:
    from freshet.services.kafka_local import LocalKafka

    return LocalKafka(
        _dir(home) / "kafka",
        port=port or None,
        partitions=partitions,
        home=jar_cache or home,
        heap=heap,
    )


def _redis(
    home: Path, port: int = 0, appendonly: bool = True, appendfsync: str = "everysec"
) -> LocalRedis:
    from freshet.services.redis_local import LocalRedis

    return LocalRedis(
        _dir(home) / "redis", port=port or None, appendonly=appendonly, appendfsync=appendfsync
    )


def _console() -> Console:
    from rich.console import Console

    return Console()


def _fail(console: Console, error: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
    return typer.Exit(code=1)


@services_app.command()
def prepare(ctx: typer.Context, jar_cache: JarCache = None) -> None:
    """Fetch the Kafka broker jars from Maven Central into the cache (once)."""
    from freshet.services.errors import ServiceSetupError
    from freshet.services.kafka_jars import KAFKA_VERSION, ensure_kafka_jars, kafka_jars_ready

    home = jar_cache or settings_of(ctx).home
    console = _console()
    if kafka_jars_ready(home):
        lib = ensure_kafka_jars(home)
        console.print(f"Kafka {KAFKA_VERSION} jars already cached in {lib}")
        return
    started = time.monotonic()
    try:
        with console.status(f"Fetching Kafka {KAFKA_VERSION} jars with Maven..."):
            lib = ensure_kafka_jars(home)
    except ServiceSetupError as e:
        raise _fail(console, e) from None
    jars = len(list(lib.glob("*.jar")))
    took = time.monotonic() - started
    console.print(f"Kafka {KAFKA_VERSION}: {jars} jars cached in {lib} ({took:.1f} s)")


@services_app.command()
def up(
    ctx: typer.Context,
    kafka_port: Annotated[
        int,
        typer.Option(
            envvar="FRESHET_SERVICES_KAFKA_PORT",
            help="Kafka client port; 0 picks a free one (and keeps it on later runs).",
        ),
    ] = 0,
    redis_port: Annotated[
        int,
        typer.Option(
            envvar="FRESHET_SERVICES_REDIS_PORT",
            help="Redis port; 0 picks a free one (and keeps it on later runs).",
        ),
    ] = 0,
    partitions: Annotated[
        int | None,
        typer.Option(
            envvar="FRESHET_TOPIC_PARTITIONS",
            min=1,
            help="Partitions of auto-created topics (default: the topic_partitions setting).",
            show_default=False,
        ),
    ] = None,
    kafka_heap: Annotated[
        str,
        typer.Option(envvar="FRESHET_SERVICES_KAFKA_HEAP", help="Max JVM heap of the broker."),
    ] = "768m",
    redis_appendonly: Annotated[
        bool,
        typer.Option(
            envvar="FRESHET_SERVICES_REDIS_APPENDONLY",
            help="Keep Redis's append-only file so its data survives restarts.",
        ),
    ] = True,
    redis_appendfsync: Annotated[
        str,
        typer.Option(
            envvar="FRESHET_SERVICES_REDIS_APPENDFSYNC",
            help="When Redis fsyncs the AOF: always, everysec or no.",
        ),
    ] = "everysec",
    timeout: Annotated[
        float,
        typer.Option(
            envvar="FRESHET_SERVICES_TIMEOUT", help="Seconds to wait for each service to be ready."
        ),
    ] = 90.0,
    jar_cache: JarCache = None,
) -> None:
    """Start Kafka and Redis under <home>/services/ (a no-op for what already runs)."""
    from freshet.services.errors import ServiceSetupError
    from freshet.services.registry import Endpoints, write_endpoints

    settings = settings_of(ctx)
    home = settings.home
    console = _console()
    notes: dict[str, str] = {}
    try:
        kafka = _kafka(
            home,
            jar_cache,
            port=kafka_port,
            partitions=partitions or settings.topic_partitions,
            heap=kafka_heap,
        )
        redis = _redis(
            home, port=redis_port, appendonly=redis_appendonly, appendfsync=redis_appendfsync
        )
        for name, service in (("kafka", kafka), ("redis", redis)):
            if service.alive():
                notes[name] = "already running"
                continue
            started = time.monotonic()
            with console.status(f"Starting {name}..."):
                service.start(timeout=timeout)
            notes[name] = f"started in {time.monotonic() - started:.1f} s"
    except (ServiceSetupError, ValueError) as e:
        raise _fail(console, e) from None
    write_endpoints(home, Endpoints(kafka_bootstrap=kafka.bootstrap, redis_url=redis.url))
    _print_table(console, home, kafka, redis, notes)


@services_app.command()
def down(
    ctx: typer.Context,
    wipe: Annotated[
        bool,
        typer.Option(
            envvar="FRESHET_SERVICES_WIPE",
            help="Also delete the services' data, config and logs.",
        ),
    ] = False,
) -> None:
    """Stop the local services and forget their endpoints."""
    from freshet.services.registry import clear_endpoints

    home = settings_of(ctx).home
    console = _console()
    kafka, redis = _kafka(home, None), _redis(home)
    for name, service in (("kafka", kafka), ("redis", redis)):
        was = service.pid
        service.stop()
        console.print(f"{name}: {'stopped' if was else 'was not running'}")
    clear_endpoints(home)
    if wipe:
        shutil.rmtree(_dir(home), ignore_errors=True)
        console.print(f"removed {_dir(home)}")


@services_app.command()
def status(ctx: typer.Context) -> None:
    """Show whether the local services run, their URLs and pids."""
    home = settings_of(ctx).home
    console = _console()
    if not _dir(home).exists():
        console.print(
            f"No local services under {_dir(home)}; start them with `freshet services up`."
        )
        return
    _print_table(console, home, _kafka(home, None), _redis(home), {})


def _print_table(
    console: Console, home: Path, kafka: LocalKafka, redis: LocalRedis, notes: dict[str, str]
) -> None:
    from rich.table import Table

    table = Table(title=f"freshet local services ({_dir(home)})")
    table.add_column("service")
    table.add_column("state")
    table.add_column("url")
    table.add_column("pid", justify="right")
    table.add_column("note")
    rows = (("kafka", kafka, kafka.bootstrap), ("redis", redis, redis.url))
    for name, service, url in rows:
        if not service.configured:
            table.add_row(name, "not set up", "-", "-", notes.get(name, ""))
            continue
        state = "[green]running[/green]" if service.alive() else "[red]stopped[/red]"
        table.add_row(name, state, url, str(service.pid or "-"), notes.get(name, ""))
    console.print(table)
