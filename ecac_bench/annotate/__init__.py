"""The ECAC data pipeline for your own photos (`ecac-bench annotate`, docs/data_format.md "Annotate your own
photos"): a model captions each photo and lists its teaching toys, experts review the toys in a spreadsheet, and a
seeded rule splits the result into train and test.

* :mod:`~ecac_bench.annotate.inputs`: the photos (a folder, or a JSONL of image paths with optional metadata);
* :mod:`~ecac_bench.annotate.answers`: the strict reading of the model's answers, and their JSON schemas;
* :mod:`~ecac_bench.annotate.pipeline`: the requests, through the project's LLM client;
* :mod:`~ecac_bench.annotate.review`: the review CSV, exported and imported;
* :mod:`~ecac_bench.annotate.split`: the seeded, group-aware split;
* :mod:`~ecac_bench.annotate.datafile`: reading and writing the JSONL data files, every field kept.
"""
