#!/usr/bin/env sh
# Makes the secrets and TLS files compose.yaml mounts (once; never committed).
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets tls
for name in nats_provisioner_password nats_job_gateway_password nats_token_service_password \
            nats_mail_service_password nats_notifier_password nats_system_password \
            gateway_admin_api_key gateway_device_secret_key gateway_api_key_hash_key; do
    [ -s "secrets/$name" ] || openssl rand -hex 32 > "secrets/$name"
done
[ -s secrets/keyring.json ] || python3 -c 'import base64,json,os,secrets
kid = secrets.token_hex(4)
print(json.dumps({"current": kid, "keys": {kid: base64.b64encode(os.urandom(32)).decode()}}))' > secrets/keyring.json
if [ ! -s tls/ca.pem ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=fleetmail local CA" \
        -keyout tls/ca-key.pem -out tls/ca.pem
    openssl req -newkey rsa:3072 -nodes -subj "/CN=fleetmail" -keyout tls/server-key.pem -out tls/server.csr
    printf "subjectAltName=DNS:nats-0,DNS:nats-1,DNS:nats-2,DNS:mongo-0,DNS:mongo-1,DNS:mongo-2,DNS:job-gateway,DNS:localhost\n" > tls/san.ext
    openssl x509 -req -in tls/server.csr -CA tls/ca.pem -CAkey tls/ca-key.pem -CAcreateserial -days 825 \
        -extfile tls/san.ext -out tls/server.pem
    cat tls/server.pem tls/server-key.pem > tls/server-bundle.pem
    chmod 0644 tls/*.pem
fi
echo "secrets in $(pwd)/secrets, certificates in $(pwd)/tls"
