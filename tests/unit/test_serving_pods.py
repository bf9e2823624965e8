"""Every serving pod the planner can choose from the default catalog, judged by what it will meet on a real
cluster: the vLLM release of the default image (its own argument definitions, read from its wheel), vLLM's KV
cache check (worked out here from the catalog's raw numbers, not with planning/memory.py), requests, writable
directories for a non-root UID, and the drain and startup budgets. (Admission under the restricted Pod
Security Standard is e2e/test_serving.py: the API server is the judge there.)"""

from __future__ import annotations

import math
import subprocess

import pytest

from greenmodel.planning.serving import DEFAULT_VLLM_IMAGE
from greenmodel.testing import vllm_release
from greenmodel.testing.ci import in_ci
from greenmodel.testing.serving import choosable_pods, default_catalog_body

CATALOG = default_catalog_body()["spec"]
PODS = choosable_pods()
IDS = [f"{p.variant}@{p.gpu_product}" for p in PODS]


@pytest.fixture(scope="module")
def wheel():
    version = vllm_release.image_version(DEFAULT_VLLM_IMAGE)
    try:
        return vllm_release.wheel_path(version)
    except (subprocess.SubprocessError, OSError, FileNotFoundError) as exc:
        if in_ci():
            pytest.fail(f"cannot obtain the vllm=={version} wheel: {exc}", pytrace=False)
        pytest.skip(f"vllm=={version} wheel unavailable: {exc}")


@pytest.fixture(scope="module")
def flags(wheel):
    return vllm_release.accepted_flags(wheel)


def _args(p) -> list[str]:
    return p.pod_spec["containers"][0]["args"]


def _arg(p, flag: str) -> str | None:
    a = _args(p)
    return a[a.index(flag) + 1] if flag in a else None


def test_the_catalog_runs_the_operators_default_image():
    images = {r["image"] for r in CATALOG.get("runtimes", []) if r["name"] == "vLLM"}
    assert images == {DEFAULT_VLLM_IMAGE}
    assert vllm_release.image_version("vllm/vllm-openai:v0.33.0@sha256:" + "0" * 64) == "0.33.0"
    with pytest.raises(ValueError):
        vllm_release.image_version("vllm/vllm-openai:latest")


def test_the_release_reader_sees_the_real_parser(wheel, flags):
    for f in ("--max-model-len", "--gpu-memory-utilization", "--served-model-name", "--tensor-parallel-size",
              "--max-num-seqs", "--port", "--host", "--quantization", "--shutdown-timeout", "--download-dir",
              "--enable-prefix-caching"):
        assert f in flags, f
    assert "--gpu-memory-fraction" not in flags and len(flags) > 150, len(flags)
    assert {"fp8", "awq", "awq_marlin", "gptq"} <= vllm_release.quantization_methods(wheel)
    assert vllm_release.unknown_flags(["m", "--port=8000", "--made-up", "1"], flags) == ["--made-up"]


def test_most_pairs_of_the_catalog_are_choosable():
    pairs = sum(len(v["profiles"]) for v in CATALOG["variants"])
    assert len(PODS) >= 30 and len(PODS) <= pairs, (len(PODS), pairs)


@pytest.mark.parametrize("pod", PODS, ids=IDS)
def test_every_flag_is_one_the_release_accepts(pod, wheel, flags):
    c = pod.pod_spec["containers"][0]
    assert c["command"] == ["vllm", "serve"] and not c["args"][0].startswith("-")  # the model, positionally
    assert vllm_release.unknown_flags(c["args"], flags) == []
    q = _arg(pod, "--quantization")
    assert q is None or q in vllm_release.quantization_methods(wheel)


@pytest.mark.parametrize("pod", PODS, ids=IDS)
def test_max_model_len_fits_by_vllms_own_check(pod):
    """vLLM refuses to start unless its KV cache (memory x utilisation - weights per GPU - non-KV memory) holds
    one request of --max-model-len tokens: cdiv(len, 16) blocks of 2 x 16 x KV heads per GPU x head size x 2
    bytes per layer (vllm/v1/core/kv_cache_planning.py, vllm/v1/kv_cache_interface.py)."""
    v = next(x for x in CATALOG["variants"] if x["name"] == pod.variant)
    g = next(x for x in CATALOG["gpus"] if x["product"] == pod.gpu_product)
    tp = int(_arg(pod, "--tensor-parallel-size"))
    util = float(_arg(pod, "--gpu-memory-utilization"))
    assert util == g["usableMemoryFraction"]
    length = int(_arg(pod, "--max-model-len"))
    assert length <= v["contextLength"]
    a = v["attention"]
    page_per_token = 2 * a["layers"] * max(1, a["kvHeads"] // tp) * a["headDim"] * 2
    need = math.ceil(length / 16) * 16 * page_per_token
    overhead_gib = v.get("overheadGiBPerGpu", 2.0)  # the API's documented default
    free = (g["memoryGiB"] * util - v["weightMemoryGiB"] / tp - overhead_gib) * 2 ** 30
    assert need <= free, (pod.variant, pod.gpu_product, length, need / 2 ** 30, free / 2 ** 30)
    # and it is the checkpoint's whole context, or no more than 1,024 tokens short of what fits
    assert length == v["contextLength"] or (free - need) < 1024 * page_per_token + 16 * page_per_token


@pytest.mark.parametrize("pod", PODS, ids=IDS)
def test_requests_writable_dirs_drain_and_startup(pod):
    spec = pod.pod_spec
    c = spec["containers"][0]
    req = c["resources"]["requests"]
    assert {"cpu", "memory", "ephemeral-storage"} <= set(req)
    assert c["resources"]["limits"]["memory"] == req["memory"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == _arg(pod, "--tensor-parallel-size")
    # writable directories for UID 1000: every cache variable points into a mounted emptyDir
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    empty = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    env = {e["name"]: e.get("value") for e in c["env"]}
    for var in ("HOME", "XDG_CACHE_HOME", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "NUMBA_CACHE_DIR",
                "OUTLINES_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        root = "/" + env[var].strip("/").split("/")[0]
        assert mounts.get(root) in empty, (var, env[var])
    assert env["USER"]  # torch's getpass.getuser() for a UID without a passwd entry
    assert spec["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["allowPrivilegeEscalation"] is False
    # the spec of choosable_pods(): ITL SLO 200 ms, TTFT SLO 5 s, maxOutputTokens 2048 by default
    drain = math.ceil((2048 * 200 + 5000) / 1000)
    assert _arg(pod, "--shutdown-timeout") == str(drain)
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == 10
    assert spec["terminationGracePeriodSeconds"] == 10 + drain + 30
    v = next(x for x in CATALOG["variants"] if x["name"] == pod.variant)
    startup = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert startup >= v["weightMemoryGiB"] * 1024 / 200 + 600  # weights at 200 MiB/s + 600 s engine start
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["timeoutSeconds"] >= 5 and c[probe]["httpGet"]["path"] == "/health"
