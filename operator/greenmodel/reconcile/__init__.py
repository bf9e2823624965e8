"""The reconcile pass's I/O halves and the operator's process state: ``observe`` (reads only), ``apply``
(writes), ``runtime`` (caches, queue, loops). The decision between them is ``planning.decide``."""
