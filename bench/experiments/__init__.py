"""One-off measurements behind docs/performance.md's design reasons, each its own command:

* ``python -m bench.experiments.paired``: sequential latency of several configurations taking
  turns, workflow by workflow (differences of a few percent, through the machine's drift);
* ``python -m bench.experiments.timeline``: where one sequential workflow's time goes, hop by hop.
"""
