"""A stand-in for the Lambda Python runtime: imports the handler from the paths given on the
command line only, then answers one invocation per stdin line (an event as JSON) with one stdout
line (the handler's response as JSON). The function's own output (JSON logs, metrics) goes to
stderr. Run with ``python -I -S lambda_host.py TASK_DIR RUNTIME_DIR``, so that nothing of the
developer's environment is importable: TASK_DIR is the unpacked zip (Lambda's /var/task),
RUNTIME_DIR holds boto3 (the runtime's own copy).

The process lives across invocations, as a warm Lambda container does.
"""

import json
import sys
import uuid
from types import SimpleNamespace

sys.path[:0] = sys.argv[1:]
answers, sys.stdout = sys.stdout, sys.stderr  # only responses on the real stdout

from ddb2bq.aws_lambda import handler  # noqa: E402 - after the path is set, as Lambda does

for line in sys.stdin:
    context = SimpleNamespace(aws_request_id=str(uuid.uuid4()), function_name="ddb2bq-e2e")
    try:
        response = handler(json.loads(line), context)
    except Exception as exc:  # noqa: BLE001 - reported to the caller as Lambda reports an error
        response = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
    answers.write(json.dumps(response) + "\n")
    answers.flush()
