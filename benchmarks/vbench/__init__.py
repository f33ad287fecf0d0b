"""VBench-style evaluation of text-to-video (and text-to-image) models.

Modules: ``spec`` (VBench's 16 dimensions, ranges and weights), ``scorers`` (the scorer registry),
``classical`` / ``learned`` / ``synthetic`` (the scorers), ``aggregate`` (normalisation, Quality /
Semantic / Total, VBench JSON), ``inputs`` (videos, prompts, metadata), ``runner`` (multi-process
scoring), ``generate`` (sampling from a checkpoint), ``official`` (delegation to the ``vbench``
package) and ``report`` (Markdown / HTML / radar / comparison). ``benchmarks/vbench_eval.py`` is the CLI.
"""
