"""`python -m greenmodel.testing.<x>` entry points start, print their URL and speak their protocol."""

import subprocess
import sys

import pytest
import requests


def run(module, *args):
    proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    return proc, url


@pytest.mark.parametrize(
    "module,args,path,check",
    [
        ("greenmodel.testing.electricitymaps", ["--token", "tok", "--start", "2022-10-06T22:00"],
         ("/v3/carbon-intensity/latest", {"zone": "GB"}, {"auth-token": "tok"}),
         lambda r: r.json()["zone"] == "GB" and r.json()["carbonIntensity"] == 110.83),
        ("greenmodel.testing.ukgrid", [], ("/intensity", {}, {}), lambda r: "intensity" in r.json()["data"][0]),
        ("greenmodel.testing.watttime", ["--user", "u", "--password", "p"], ("/login", {}, {"Authorization": "Basic dTpw"}),
         lambda r: r.json()["token"]),
        ("greenmodel.testing.workload", ["--model", "ns/chat:m:2"], ("/metrics", {}, {}),
         lambda r: 'vllm:num_requests_running{app_kubernetes_io_instance="chat"' in r.text and "DCGM_FI_DEV_POWER_USAGE" in r.text),
    ],
)
def test_entrypoint(module, args, path, check):
    proc, url = run(module, *args)
    try:
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else url
        p, params, headers = path
        r = requests.get(url + p, params=params, headers=headers, timeout=5)
        assert r.status_code == 200 and check(r)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
