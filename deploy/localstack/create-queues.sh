#!/bin/sh
# LocalStack "ready" hook: the order events queue and its dead-letter queue. A message
# received 5 times without being deleted moves to the DLQ instead of looping forever.
# Kept identical in deploy/localstack/ (compose) and deploy/k8s/overlays/local/localstack/
# (Kubernetes; kustomize reads files only below the overlay); a test checks.
set -eu
awslocal sqs create-queue --queue-name order-events-dlq
dlq_arn=$(awslocal sqs get-queue-attributes \
    --queue-url "$(awslocal sqs get-queue-url --queue-name order-events-dlq --query QueueUrl --output text)" \
    --attribute-names QueueArn --query Attributes.QueueArn --output text)
awslocal sqs create-queue --queue-name order-events \
    --attributes "{\"RedrivePolicy\": \"{\\\"deadLetterTargetArn\\\":\\\"${dlq_arn}\\\",\\\"maxReceiveCount\\\":\\\"5\\\"}\"}"
echo "order-events ready (dead letters to ${dlq_arn} after 5 receives)"
