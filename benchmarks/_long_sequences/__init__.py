"""The long-sequence benchmark (``benchmarks/long_sequences.py``): remat's memory and time, unroll=k's time.

* :mod:`.points`: the measurements, one point each (imported in the worker, frameworks imported inside);
* :mod:`.worker`: runs one point in a fresh process and prints its result as one JSON line;
* :mod:`.plan`: the points of a run, the skips, the subprocesses;
* :mod:`.report`: the JSON, the Markdown table and the plot.
"""
