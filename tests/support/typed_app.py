"""A small user app that ``mypy --strict`` must accept (tests/test_typing.py): the public API as a
README reader writes it, pools included."""

from __future__ import annotations

import asyncio

import tornado.web

from tornado_memory_exporter import Config, Exporter, ObjectPool, install, start_in_thread
from tornado_memory_exporter.census import CensusSnapshot
from tornado_memory_exporter.mixin import MixinConfig


class Connection:
    def query(self, sql: str) -> list[str]:
        return [sql]


class MainHandler(tornado.web.RequestHandler):
    def initialize(self, pool: ObjectPool[Connection]) -> None:
        self.pool = pool

    async def get(self) -> None:
        async with self.pool.acquire(timeout=1.0) as conn:
            rows: list[str] = conn.query("select 1")
        with self.pool.acquire_sync() as same:
            rows += same.query("select 2")
        lease = await self.pool.lease()
        rows += lease.obj.query("select 3")
        lease.release()
        self.write({"rows": rows})


def make_app(pool: ObjectPool[Connection]) -> tornado.web.Application:
    return tornado.web.Application([(r"/", MainHandler, {"pool": pool})])


async def main() -> None:
    pool = ObjectPool(Connection, max_size=4, name="db")
    app = make_app(pool)
    exporter: Exporter = install(app, config=Config(census_interval=30))
    exporter.pools.register("db", pool)
    snapshot: CensusSnapshot = await exporter.census_now()
    print(snapshot.objects.get("dict", 0))
    url: str = exporter.serve(port=0)
    print(url)
    exporter.stop()


def hidden_loop() -> None:
    exporter = start_in_thread(port=0, config=Config(census_interval=30))
    exporter.watch("settings", {"debug": False})
    snapshot: CensusSnapshot = exporter.census_now().result(timeout=60)
    print(exporter.url, snapshot.objects.get("dict", 0), MixinConfig().namespace)
    exporter.stop()


if __name__ == "__main__":
    asyncio.run(main())
