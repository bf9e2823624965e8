"""What the serving pod runs, from the catalog's runtime profile and the GreenModel (planning/serving.py), and
the objects built from it (kube/builders.py): weights sources, the token, admin overrides, refusals."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from greenmodel.api.v1alpha1 import GreenModelSpec, InvalidObject, ModelCatalogSpec, parse_modelcatalog
from greenmodel.kube import builders, names
from greenmodel.planning.serving import RuntimeProblem, serving_spec

VARIANT = {"name": "small", "family": "chat", "modelId": "org/small", "parametersBillions": 8, "weightMemoryGiB": 16,
           "profiles": [{"gpuProduct": "GPU-X", "gpusPerReplica": 2, "prefillTokensPerSecond": 8000,
                         "batch": [{"maxBatchSize": 8, "outputTokensPerSecond": 400,
                                    "interTokenP95Milliseconds": 20, "powerWatts": 300}]}]}
GPUS = [{"product": "GPU-X", "memoryGiB": 80, "idleWatts": 60, "maxWatts": 400}]
CANDIDATE = SimpleNamespace(runtime_args=(), gpus_per_replica=2, batch_cap=8, max_model_len=8192,
                            gpu_memory_utilization=0.9, region="r1", gpu_product="GPU-X")
OWNER = builders.OwnerRef("chat", "team-a", "uid")


def catalog(variant=None, **spec) -> ModelCatalogSpec:
    return ModelCatalogSpec.model_validate({"gpus": GPUS, "variants": [{**VARIANT, **(variant or {})}], **spec})


def gm(**serving) -> GreenModelSpec:
    return GreenModelSpec.model_validate({"model": {"family": "chat"}, "serving": serving,
                                          "latency": {"ttftP95Milliseconds": 1000, "interTokenP95Milliseconds": 40}})


def pod(cat: ModelCatalogSpec, spec: GreenModelSpec | None = None, candidate=CANDIDATE) -> tuple[dict, dict]:
    s = serving_spec(cat, cat.variants[0], candidate, spec or gm())
    dep = builders.build_deployment(OWNER, builders.Placement("small", "r1", "GPU-X"), 1, s)
    pod_spec = dep["spec"]["template"]["spec"]
    return pod_spec, {e["name"]: e for e in pod_spec["containers"][0]["env"]}


def test_without_a_cache_each_pod_downloads_into_a_sized_emptydir():
    spec, env = pod(catalog())
    models = next(v for v in spec["volumes"] if v["name"] == "models")
    assert models["emptyDir"]["sizeLimit"] == "19660Mi"  # 16 GiB x 1.2
    assert spec["containers"][0]["args"][0] == "org/small" and "HF_HUB_OFFLINE" not in env


def test_preloaded_weights_mount_read_only_and_serve_offline_from_the_path():
    cat = catalog({"preloaded": {"claimName": "weights", "path": "llama/8b"}},
                  huggingFaceToken={"secretName": "hf"})
    spec, env = pod(cat)
    assert next(v for v in spec["volumes"] if v["name"] == "models")["persistentVolumeClaim"] == {
        "claimName": "weights", "readOnly": True}
    assert spec["containers"][0]["args"][0] == "/models/llama/8b"
    assert env["HF_HUB_OFFLINE"]["value"] == "1" and "HF_TOKEN" not in env  # nothing to download, no token


def test_the_token_is_a_secret_key_ref_required_when_the_greenmodel_names_it():
    _, env = pod(catalog(huggingFaceToken={"secretName": "hf", "key": "token"}))
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token", "optional": True}
    _, env = pod(catalog(huggingFaceToken={"secretName": "hf"}), gm(huggingFaceTokenSecretName="mine"))
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "HF_TOKEN", "optional": False}


def test_with_a_cache_the_job_downloads_and_the_pod_reads_offline():
    cat = catalog(modelCache={"storageClassName": "fast", "accessMode": "ReadWriteMany"},
                  huggingFaceToken={"secretName": "hf"})
    s = serving_spec(cat, cat.variants[0], CANDIDATE, gm())
    claim = builders.build_cache_claim(OWNER, s, "fast", "ReadWriteMany")
    job = builders.build_download_job(OWNER, builders.Placement("small", "r1", "GPU-X"), s)
    assert claim["metadata"]["name"] == names.cache_claim_name("chat", "org/small", "r1")
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "storageClassName": "fast",
                             "resources": {"requests": {"storage": "19660Mi"}}}
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["hf", "download", "org/small"]
    assert any(e["name"] == "HF_TOKEN" for e in c["env"])
    spec, env = pod(cat)
    assert env["HF_HUB_OFFLINE"]["value"] == "1" and "HF_TOKEN" not in env


def test_the_runtime_profile_sets_image_requests_and_the_allowed_pod_fields():
    cat = catalog(runtimes=[{"name": "vLLM", "image": "registry.local/vllm@sha256:" + "a" * 64,
                             "imagePullSecrets": ["pull"], "runtimeClassName": "nvidia",
                             "resources": {"cpu": "6", "memory": "4Gi", "ephemeralStorage": "5Gi"},
                             "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}, {"name": "HOME", "value": "/x"}],
                             "podSpecOverrides": {"nodeSelector": {"pool": "gpu"}, "schedulerName": "volcano"}}])
    spec, env = pod(cat)
    c = spec["containers"][0]
    assert c["image"].startswith("registry.local/vllm@sha256:") and spec["imagePullSecrets"] == [{"name": "pull"}]
    assert c["resources"]["requests"]["cpu"] == "12"  # 6 per GPU x 2
    assert c["resources"]["requests"]["memory"] == "24Gi"  # 4Gi x 2 is below weights 16 + 8: the floor
    assert c["resources"]["requests"]["ephemeral-storage"] == "10Gi"
    assert env["VLLM_LOGGING_LEVEL"]["value"] == "DEBUG" and env["HOME"]["value"] == "/scratch/home"  # ours win
    assert spec["nodeSelector"] == {"pool": "gpu"} and spec["schedulerName"] == "volcano"
    assert spec["runtimeClassName"] == "nvidia"


def test_pod_fields_outside_the_allow_list_are_refused_at_parse():
    body = {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "ModelCatalog", "metadata": {"name": "c"},
            "spec": {"gpus": GPUS, "variants": [VARIANT],
                     "runtimes": [{"name": "vLLM", "image": "i", "podSpecOverrides": {"hostNetwork": True}}]}}
    with pytest.raises(InvalidObject) as e:
        parse_modelcatalog(body)
    assert "podSpecOverrides.hostNetwork" in str(e.value)


def test_extra_args_cannot_set_a_flag_the_operator_derives():
    cat = catalog({"runtime": {"args": ["--max-model-len=4096"]}})
    with pytest.raises(RuntimeProblem) as e:
        serving_spec(cat, cat.variants[0], SimpleNamespace(**{**vars(CANDIDATE), "runtime_args": ("--max-model-len=4096",)}),
                     gm())
    assert e.value.reason == "RuntimeArgsInvalid" and "--max-model-len" in str(e.value)


def test_an_unknown_runtime_without_an_image_is_a_problem_not_a_crash():
    cat = catalog({"runtime": {"name": "SGLang"}})
    with pytest.raises(RuntimeProblem) as e:
        serving_spec(cat, cat.variants[0], CANDIDATE, gm())
    assert e.value.reason == "RuntimeImageMissing"


def test_online_quantisation_only_when_the_variant_asks_for_it():
    assert "--quantization" not in pod(catalog())[0]["containers"][0]["args"]
    args = pod(catalog({"quantization": "fp8"}))[0]["containers"][0]["args"]
    assert args[args.index("--quantization") + 1] == "fp8"


def test_drain_follows_the_slo_and_the_longest_response():
    spec, _ = pod(catalog(), gm(maxOutputTokens=500))
    c = spec["containers"][0]
    # 500 tokens x 40 ms + 1,000 ms TTFT = 21 s
    assert c["args"][c["args"].index("--shutdown-timeout") + 1] == "21"
    assert spec["terminationGracePeriodSeconds"] == 10 + 21 + 30


def test_download_pods_are_not_selected_as_serving_pods():
    cat = catalog(modelCache={})
    s = serving_spec(cat, cat.variants[0], CANDIDATE, gm())
    job = builders.build_download_job(OWNER, builders.Placement("small", "r1", "GPU-X"), s)
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    pdb_selector = builders.build_pdb(OWNER)["spec"]["selector"]["matchLabels"]
    assert not all(pod_labels.get(k) == v for k, v in pdb_selector.items())  # a finished Job pod never counts
    assert job["metadata"]["labels"][names.LABEL_NAME] == names.APP_NAME  # the Job itself is ours and watched
