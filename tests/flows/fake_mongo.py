"""An in-process stand-in for MongoDB servers (no server can be installed on the test VMs).

``FakeMongoServers.install(monkeypatch)`` makes every ``pymongo.MongoClient`` opened by
maggma stores (MongoStore, GridFSStore, so jobflow-remote's queue and job stores) and by
FireWorks' LaunchPad a mongomock client: clients to the same ``host:port`` share one
database server, and closing a client leaves the data in place as a real server would
(mongomock's own ``close`` wipes it). Hosts listed in ``down`` refuse connections the way
pymongo does (``ServerSelectionTimeoutError``) when first used.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import mongomock_ng
import pymongo.errors
from mongomock_ng.store import ServerStore


class _Client(mongomock_ng.MongoClient):
    """A mongomock client whose ``close`` does not wipe the shared server."""

    def close(self) -> None:
        self._closed = True


class _DownClient:
    """A client to a host that does not answer."""

    def __init__(self, address: str) -> None:
        self.address = address

    def __getitem__(self, name: str):
        raise pymongo.errors.ServerSelectionTimeoutError(
            f"{self.address}: [Errno 111] Connection refused (fake server down)"
        )

    __getattr__ = __getitem__

    def close(self) -> None:
        pass


def _address(host, port) -> tuple[str, int]:
    if isinstance(host, str) and host.startswith("mongodb"):
        parts = urlsplit(host)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        name, _, p = netloc.partition(":")
        return name, int(p or 27017)
    return host or "localhost", int(port or 27017)


class FakeMongoServers:
    """All fake servers of one test, keyed by ``(host, port)``."""

    def __init__(self, down: set[str] | None = None) -> None:
        self.servers: dict[tuple[str, int], ServerStore] = {}
        self.down = set(down or ())
        self.clients: list[tuple[str, int]] = []

    def client(self, host=None, port=None, *args, **kwargs):
        """What ``MongoClient(...)`` returns while installed."""
        address = _address(host, port)
        self.clients.append(address)
        if address[0] in self.down:
            return _DownClient(f"{address[0]}:{address[1]}")
        store = self.servers.setdefault(address, ServerStore())
        return _Client(_store=store)

    def database(self, name: str, host: str = "localhost", port: int = 27017):
        """A database on a fake server, for inspecting what the code wrote."""
        return self.client(host, port)[name]

    def install(self, monkeypatch) -> FakeMongoServers:
        """Route maggma's, FireWorks' and pymongo's ``MongoClient`` here."""
        import fireworks.core.launchpad
        import maggma.stores.gridfs
        import maggma.stores.mongolike
        import pymongo
        from mongomock_ng.gridfs import enable_gridfs_integration

        enable_gridfs_integration()
        for module in (
            maggma.stores.mongolike,
            maggma.stores.gridfs,
            fireworks.core.launchpad,
            pymongo,
        ):
            monkeypatch.setattr(module, "MongoClient", self.client, raising=False)
        return self
