"""DNS rebinding: the name passes the destination check with a public answer, then the connection's
own lookup reaches loopback. The peer address of the connected socket is checked before TLS and
before any byte of the request (with the provider's token) leaves."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from greenmodel.signals.carbon.base import ProviderError, Reason
from greenmodel.signals.http import SafeHttpClient, mount_peer_check
from greenmodel.settings import NetworkSettings


class CountingListener:
    """A TCP listener on 127.0.0.1 that records how many bytes each accepted connection sent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(1.0)
            data = b""
            recorded = False
            try:
                while chunk := conn.recv(4096):
                    data += chunk
                    if b"\r\n\r\n" in data:
                        # recorded before answering: a client holding the answer must find the request here
                        self.received.append(data)
                        recorded = True
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                        break
            except OSError:
                pass
            if not recorded:
                self.received.append(data)
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    lst = CountingListener()
    yield lst
    lst.close()


def test_a_name_that_rebinds_to_loopback_is_refused_before_any_byte_is_sent(listener):
    net = NetworkSettings()
    # The check sees a public address; the connection (system resolver) reaches 127.0.0.1.
    client = SafeHttpClient(net, resolver=lambda host, port: ["93.184.216.34"])
    with pytest.raises(ProviderError) as err:
        client.get(f"https://localhost:{listener.port}/v3/carbon-intensity/latest",
                   headers={"auth-token": "secret-token"})
    assert err.value.reason == Reason.UNSAFE_DESTINATION
    assert "127.0.0.1" in err.value.message
    listener._thread.join(timeout=1.5)
    assert all(b"secret-token" not in d for d in listener.received)
    assert all(d == b"" for d in listener.received), listener.received


def test_a_listed_private_host_still_connects(listener):
    net = NetworkSettings(allowInsecureHttpHosts=["localhost"])
    resp = SafeHttpClient(net).get(f"http://localhost:{listener.port}/x")
    assert resp.status == 200 and listener.received and listener.received[0].startswith(b"GET /x ")


def test_a_plain_session_with_the_peer_check_refuses_loopback(listener):
    # The Prometheus serving-metrics client uses its own requests session with the same check mounted.
    s = mount_peer_check(requests.Session(), NetworkSettings())
    with pytest.raises(requests.exceptions.ConnectionError) as err:
        s.get(f"http://localhost:{listener.port}/api/v1/query", timeout=2)
    assert "non-public address 127.0.0.1" in str(err.value)
    assert all(d == b"" for d in listener.received)
