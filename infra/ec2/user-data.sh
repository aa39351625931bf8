#!/usr/bin/env bash
# EC2 user-data: run the predict container on Amazon Linux 2023.
#
# infra/template.yaml sends this file verbatim, behind three lines that set IMAGE_URI,
# MODEL_URI and AWS_REGION (`make test` checks the copy in the template matches this file).
# By hand, as root: IMAGE_URI=... MODEL_URI=s3://bucket/models/digits AWS_REGION=... bash user-data.sh
#
# Installs Docker, logs in to ECR with the instance profile, waits (bounded) for the image to
# be pushed, and runs it on port 8000 with a restart policy: the container comes back after a
# crash or a reboot, and each start loads the newest model version (`latest`) from S3.
set -euo pipefail

for var in IMAGE_URI MODEL_URI AWS_REGION; do
    if [[ -z ${!var:-} ]]; then
        echo "user-data: $var is not set" >&2
        exit 1
    fi
done
registry=${IMAGE_URI%%/*}
pull_timeout=${PULL_TIMEOUT:-3600}

dnf install -y docker
systemctl enable --now docker

# The stack creates the repository; the image is pushed after the stack exists. Keep trying
# (ECR login tokens last 12 hours, so log in again on each attempt) until the image is there.
deadline=$((SECONDS + pull_timeout))
until aws ecr get-login-password --region "$AWS_REGION" |
    docker login --username AWS --password-stdin "$registry" && docker pull "$IMAGE_URI"; do
    if ((SECONDS >= deadline)); then
        echo "user-data: $IMAGE_URI not pullable after ${pull_timeout}s; push it, then run this script again" >&2
        exit 1
    fi
    echo "user-data: waiting for $IMAGE_URI to be pushed"
    sleep 20
done

docker rm -f predict >/dev/null 2>&1 || true
# Credentials come from the instance profile through IMDSv2 (hop limit 2 lets the container
# reach it through Docker's bridge).
docker run -d --name predict \
    --restart unless-stopped \
    --publish 8000:8000 \
    --env MODEL_URI="$MODEL_URI" \
    --env AWS_REGION="$AWS_REGION" \
    --env RUST_LOG=info \
    --log-opt max-size=10m --log-opt max-file=3 \
    "$IMAGE_URI"
echo "user-data: predict started from $IMAGE_URI with MODEL_URI=$MODEL_URI"
