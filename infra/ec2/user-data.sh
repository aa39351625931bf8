#!/usr/bin/env bash
# EC2 user-data: run the predict container on Amazon Linux 2023.
#
# infra/template.yaml sends this file verbatim, behind four lines that export IMAGE_URI,
# MODEL_URI, AWS_REGION and API_KEYS_PARAMETER (`make test` checks the copy in the template
# matches this file). API_KEYS_PARAMETER names an SSM SecureString of comma-separated API
# keys (empty: no keys); the keys themselves never pass through user-data.
# By hand, as root: IMAGE_URI=... MODEL_URI=s3://bucket/models/digits AWS_REGION=... bash user-data.sh
#
# First boot (no argument): install Docker, install this script as a boot-time unit
# (digits-predict.service), and start the unit without waiting for it.
# The unit (--start): log in to ECR with the instance profile, wait (bounded) until the image has
# been pushed, pull it, and (re)create the container on port 8000 with a restart policy. So:
#   - a crash restarts the container (Docker's policy);
#   - `docker restart predict` or a reboot reloads the newest model version (`latest`) from S3;
#   - a reboot also pulls the image tag again, so a re-pushed image is picked up.
set -euo pipefail

for var in IMAGE_URI MODEL_URI AWS_REGION; do
    if [[ -z ${!var:-} ]]; then
        echo "user-data: $var is not set" >&2
        exit 1
    fi
done

if [[ ${1:-} != --start ]]; then
    dnf install -y docker
    install -m 0755 "$0" /usr/local/sbin/digits-predict
    printf 'IMAGE_URI=%s\nMODEL_URI=%s\nAWS_REGION=%s\nAPI_KEYS_PARAMETER=%s\n' \
        "$IMAGE_URI" "$MODEL_URI" "$AWS_REGION" "${API_KEYS_PARAMETER:-}" >/etc/digits-predict.env
    cat >/etc/systemd/system/digits-predict.service <<'UNIT'
[Unit]
Description=Pull the predict image and (re)create its container
Requires=docker.service
After=docker.service network-online.target
Wants=network-online.target

[Service]
Type=oneshot
EnvironmentFile=/etc/digits-predict.env
ExecStart=/usr/local/sbin/digits-predict --start
TimeoutStartSec=3700

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable --now docker
    systemctl enable digits-predict.service
    # Don't hold up boot while waiting for the image: follow with `journalctl -u digits-predict`.
    systemctl start --no-block digits-predict.service
    echo "user-data: digits-predict.service started"
    exit 0
fi

registry=${IMAGE_URI%%/*}
pull_timeout=${PULL_TIMEOUT:-3600}

# The stack creates the repository; the image is pushed after the stack exists. Keep trying
# until it is there, logging in again each time (an ECR login lasts 12 hours).
deadline=$((SECONDS + pull_timeout))
until aws ecr get-login-password --region "$AWS_REGION" |
    docker login --username AWS --password-stdin "$registry" && docker pull "$IMAGE_URI"; do
    if ((SECONDS >= deadline)); then
        echo "digits-predict: $IMAGE_URI not pullable after ${pull_timeout}s; push it, then: systemctl restart digits-predict" >&2
        exit 1
    fi
    echo "digits-predict: waiting for $IMAGE_URI to be pushed"
    sleep 20
done

# API keys: read from Parameter Store at each start (so a rotated key is picked up by a
# restart), into a file only root and the container's user (10001) can read, mounted read-only.
keys_args=()
if [[ -n ${API_KEYS_PARAMETER:-} ]]; then
    install -d -m 0700 -o 10001 -g 10001 /etc/digits-predict
    umask 077
    aws ssm get-parameter --region "$AWS_REGION" --with-decryption --name "$API_KEYS_PARAMETER" \
        --query Parameter.Value --output text | tr ',' '\n' >/etc/digits-predict/api-keys.new
    chown 10001:10001 /etc/digits-predict/api-keys.new
    mv /etc/digits-predict/api-keys.new /etc/digits-predict/api-keys
    keys_args=(--volume /etc/digits-predict/api-keys:/run/secrets/api-keys:ro
        --env API_KEYS_FILE=/run/secrets/api-keys)
fi

docker rm -f predict >/dev/null 2>&1 || true
# Credentials come from the instance profile through IMDSv2 (hop limit 2 lets the container
# reach it through Docker's bridge).
docker run -d --name predict \
    --restart unless-stopped \
    --publish 8000:8000 \
    --env MODEL_URI="$MODEL_URI" \
    --env AWS_REGION="$AWS_REGION" \
    --env RUST_LOG=info \
    "${keys_args[@]}" \
    --log-opt max-size=10m --log-opt max-file=3 \
    "$IMAGE_URI"
echo "digits-predict: started $IMAGE_URI with MODEL_URI=$MODEL_URI"
