"""greenmodel-operator: serve LLMs on Kubernetes GPUs with the least energy and carbon that keeps quality and latency promises."""

__version__ = "0.1.0"
