"""The stream runner (``ddb2bq run``): reads a table's DynamoDB stream itself and writes every
change through the one pipeline, for deployments without Lambda and for the local mode.

- :mod:`~ddb2bq.runner.loop`: the loop, its lease, shard lineage, checkpoints and catching up;
- :mod:`~ddb2bq.runner.reading`: one shard's iterator and GetRecords page, errors classified;
- :mod:`~ddb2bq.runner.gaps`: data loss and the message that stops the runner (exit 3);
- :mod:`~ddb2bq.runner.pacing`: back-off on throttling and idle shards;
- :mod:`~ddb2bq.runner.signals`: SIGTERM/SIGINT;
- :mod:`~ddb2bq.runner.view`: progress, live on a terminal, log lines otherwise.
"""
