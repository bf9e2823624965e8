"""Local stand-ins for the outside world, for tests, the demo and e2e (bind 127.0.0.1, port 0):

- ``electricitymaps.ElectricityMapsServer``, ``watttime.WattTimeServer``, ``ukgrid.UKGridServer``:
  the providers' real wire formats, replaying the recorded 2022 series (``replay.GridReplay``) at
  any speed, with fault modes (``fakeserver``);
- ``workload.WorkloadSimulator``: vLLM- and DCGM-shaped ``/metrics`` driven by the Azure LLM traces;
- ``prometheus.PrometheusProcess``: a real Prometheus (Debian binary) scraping the simulator.

Each has a ``python -m greenmodel.testing.<module>`` entry that prints its URL.
"""
