"""Redirects are never followed, to any host: WattTime login and the Prometheus carbon provider.

A canary listener on another loopback port counts accepted connections; every redirect points at it.
"""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from greenmodel.signals.carbon.base import ProviderError, Reason
from greenmodel.signals.carbon.registry import build_providers
from greenmodel.testing.replay import GridReplay
from greenmodel.testing.watttime import WattTimeServer


@pytest.fixture
def canary():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    s.settimeout(0.1)
    accepts = []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                c, a = s.accept()
                accepts.append(a)
                c.close()
            except OSError:
                pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{s.getsockname()[1]}/steal", accepts
    stop.set()
    t.join(1)
    s.close()


def test_watttime_login_redirect_is_refused(canary, monkeypatch, make_local_settings):
    where, accepts = canary
    srv = WattTimeServer(GridReplay(start="2022-03-07T00:00"), username="alice", password="s3cret").start()
    try:
        monkeypatch.setenv("WT_USER", "alice")
        monkeypatch.setenv("WT_PASS", "s3cret")
        s = make_local_settings({"watttime": {"type": "watttime", "endpoint": srv.url,
                                              "credentials": {"username": {"env": "WT_USER"},
                                                              "password": {"env": "WT_PASS"}}}})
        srv.set_fault("redirect", location=where)  # the very first call is the login
        with pytest.raises(ProviderError) as e:
            build_providers(s)["watttime"].latest("GB", "UK")
        assert e.value.reason is Reason.REDIRECT_REFUSED
        assert srv.count("/login") == 1
        assert accepts == []
    finally:
        srv.stop()


def test_prometheus_carbon_provider_redirect_is_refused(canary, make_local_settings):
    where, accepts = canary

    class Redirect(BaseHTTPRequestHandler):
        def _go(self):
            self.send_response(302)
            self.send_header("Location", where)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _go

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        s = make_local_settings({"prom": {"type": "prometheus", "url": f"http://127.0.0.1:{httpd.server_port}"}})
        with pytest.raises(ProviderError) as e:
            build_providers(s)["prom"].latest("PL", "PL")
        assert e.value.reason is Reason.REDIRECT_REFUSED, e.value
        assert accepts == []
    finally:
        httpd.shutdown()
        httpd.server_close()
