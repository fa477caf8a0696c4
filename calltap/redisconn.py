"""Connections to Redis as a deployment runs it: one server, a Sentinel-watched master and
its replicas, or a Cluster. Every process (probe, writer, dashboard, supervisor) connects
through ``connect``, so one URL in the configuration decides for all.

- ``redis://HOST:PORT/DB``, ``rediss://...`` (TLS), ``unix:///PATH``: one server.
- ``redis-sentinel://HOST:PORT[,HOST:PORT...]/MASTER``: the master the sentinels name,
  found again after a failover.
- ``redis-cluster://HOST:PORT[,HOST:PORT...]``: a Cluster, from any of its nodes.

User and password go in the URL as usual (``redis-cluster://user:pass@host:port``)."""

from __future__ import annotations

import urllib.parse
from typing import Any


class RedisUrlError(ValueError):
    """A Redis URL calltap cannot use (the message says why)."""


def _nodes(netloc: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    creds, _, hosts = netloc.rpartition("@")
    user, _, password = creds.partition(":")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise RedisUrlError(f"{item!r}: expected HOST:PORT")
        nodes.append((host.strip("[]"), int(port)))
    return (nodes, urllib.parse.unquote(user) or None,
            urllib.parse.unquote(password) or None)


def connect(url: str, **kw: Any) -> Any:
    """A client for ``url``; ``kw`` are redis-py connection options (timeouts)."""
    import redis

    scheme = url.split("://", 1)[0].lower()
    if scheme == "redis-cluster":
        from redis.cluster import ClusterNode, RedisCluster

        nodes, user, password = _nodes(urllib.parse.urlsplit(url).netloc)
        return RedisCluster(startup_nodes=[ClusterNode(h, p)  # type: ignore[no-untyped-call]
                                           for h, p in nodes],
                            username=user, password=password, **kw)
    if scheme == "redis-sentinel":
        from redis.sentinel import Sentinel

        parts = urllib.parse.urlsplit(url)
        nodes, user, password = _nodes(parts.netloc)
        master = parts.path.strip("/")
        if not master:
            raise RedisUrlError(f"{url}: name the master (redis-sentinel://HOST:PORT/NAME)")
        sentinel = Sentinel(nodes, sentinel_kwargs={  # type: ignore[no-untyped-call]
            k: v for k, v in kw.items() if k.startswith("socket_")}, username=user,
            password=password, **kw)
        return sentinel.master_for(master)  # type: ignore[no-untyped-call]
    if scheme not in ("redis", "rediss", "unix"):
        raise RedisUrlError(f"{url}: a redis://, rediss://, unix://, redis-sentinel:// or "
                            "redis-cluster:// URL")
    return redis.Redis.from_url(url, **kw)


def primaries(client: Any, keys: list[str]) -> Any:
    """Which server is in charge of ``keys`` now, as the client last learnt it (no round
    trip): the cluster nodes owning them, the master a Sentinel named, or None for one
    server. A change means a failover happened."""
    get_node = getattr(client, "get_node_from_key", None)
    if get_node is not None:
        return tuple(get_node(k).name for k in keys)
    pool = getattr(client, "connection_pool", None)
    return getattr(pool, "master_address", None)
