"""The serving pods of the default catalog, for tests that judge them (the judges are elsewhere: the API
server's admission, the vLLM release's own argument definitions, arithmetic written out in the test)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources

import yaml

from greenmodel.api.v1alpha1 import GreenModelSpec, parse_modelcatalog
from greenmodel.kube import builders
from greenmodel.planning.planner import plan
from greenmodel.planning.serving import serving_spec
from greenmodel.planning.types import Intensity, Observed, RegionObs


@dataclass(frozen=True)
class RenderedPod:
    variant: str
    gpu_product: str
    deployment: dict

    @property
    def pod_spec(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]


def default_catalog_body() -> dict:
    text = resources.files("greenmodel").joinpath("data/default-catalog.yaml").read_text()
    return next(d for d in yaml.safe_load_all(text) if d and d.get("kind") == "ModelCatalog")


def choosable_pods(spec_overrides: dict | None = None) -> list[RenderedPod]:
    """The Deployment of every variant x GPU product of the default catalog that the planner chooses when it is
    the only pair allowed (a relaxed SLO, so latency does not rule a pair out; memory still does)."""
    cat = parse_modelcatalog(default_catalog_body()).spec
    now = datetime.now(timezone.utc)
    obs = Observed(regions={"r": RegionObs(intensity=Intensity(100.0, "test", "Z", now, "Measured"), pue=1.1)})
    out = []
    for v in cat.variants:
        for p in v.profiles:
            spec = GreenModelSpec.model_validate({
                "model": {"family": v.family, "variants": [v.name]}, "placement": {"gpuProducts": [p.gpu_product]},
                "latency": {"ttftP95Milliseconds": 5000, "interTokenP95Milliseconds": 200},
                "load": {"outputTokensPerSecond": 100}, "maxReplicas": 50, **(spec_overrides or {})})
            pl = plan(spec, cat, obs, now)
            if not pl.feasible or pl.chosen is None:
                continue
            s = serving_spec(cat, v, pl.chosen, spec)
            dep = builders.build_deployment(builders.OwnerRef("chat", "ns", "uid"), pl.chosen.placement, 1, s)
            out.append(RenderedPod(v.name, p.gpu_product, dep))
    return out
