"""Deploying the Lambda function: the zip (:mod:`.package`), the CloudFormation stack
(:mod:`.template`), turning on the table's stream and creating the stack (:mod:`.stack`)."""
