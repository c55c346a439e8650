"""The private test servers start, answer, and are gone afterwards."""

from __future__ import annotations

import socket

import pytest

from tests.servers import ServerError, free_port, redis_server, wait_for_port


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_server_answers_and_stops() -> None:
    with redis_server() as url:
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"PING\r\n")
            assert conn.recv(64) == b"+PONG\r\n"
    with pytest.raises(ServerError, match="nothing listens"):
        wait_for_port(port, timeout=0.2)
