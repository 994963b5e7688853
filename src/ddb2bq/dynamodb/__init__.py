"""DynamoDB and DynamoDB Streams, behind the interfaces the runtimes need.

- :mod:`ddb2bq.dynamodb.tables`: DescribeTable: a table's key schema and its stream's ARN.
- :mod:`ddb2bq.dynamodb.client`: the typed Protocol of boto3's ``dynamodbstreams`` client.
- :mod:`ddb2bq.dynamodb.streams`: the one-pass stream reader (parents before children, every
  shard to its end).
- :mod:`ddb2bq.dynamodb.shards`: shard lineage: listing, parent-first order, children of an
  ended shard.
- :mod:`ddb2bq.dynamodb.events`: GetRecords records as the events Lambda delivers.

Nothing is imported here, so that importing one of them pays for that one only.
"""
