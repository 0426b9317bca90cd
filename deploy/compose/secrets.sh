#!/usr/bin/env sh
# Makes the secrets and TLS files compose.yaml mounts (once; never committed).
#
#   sudo ./secrets.sh            # on the Docker host, before `docker compose up`
#   ./secrets.sh /some/dir       # elsewhere (tests): the same files under /some/dir
#
# Every private key and secret is mode 0600 and, when run as root, owned by the user of the
# one kind of container that reads it (compose bind-mounts files as they are on the host):
# the fleetmail services run as 10001, mongod as 999 (the mongo image's user), nats-server
# and mongosh as root (0). Run as another user, the files stay that user's (still 0600) and
# the script prints the chown commands to run. Certificates are public (0644).
#
# One certificate per role, each mounted only where it is used:
#   ca/                    the CAs' keys: never mounted anywhere
#   tls/ca.pem             the CA the services trust for NATS and MongoDB (certificate only)
#   tls/nats/              NATS: server.pem (client port), routes.pem (cluster routes, signed by
#                          a CA of their own, routes-ca.pem, which signs nothing else: a service's
#                          or another server's certificate cannot join the cluster)
#   tls/mongo/             mongod: server-bundle.pem (certificate and key), ca.pem
#   tls/gateway/           job-gateway's public SMTP listener: smtp.pem, self-signed for
#                          $FLEETMAIL_PUBLIC_HOST (replace it with a publicly trusted one)
#   secrets/               passwords, keys, the keyring, MongoDB's member key file and the
#                          services' MongoDB connection strings (one user per service)
set -eu
cd "${1:-$(dirname "$0")}"
umask 077
mkdir -p secrets ca tls/nats tls/mongo tls/gateway
PUBLIC_HOST="${FLEETMAIL_PUBLIC_HOST:-fleetmail.example.com}"
SERVICE_UID=10001
MONGOD_UID=999
MONGO_HOSTS="mongo-0:27017,mongo-1:27017,mongo-2:27017"

for name in nats_provisioner_password nats_job_gateway_password nats_token_service_password \
            nats_mail_service_password nats_notifier_password nats_system_password \
            gateway_admin_api_key gateway_device_secret_key gateway_api_key_hash_key \
            mongo_admin_password mongo_job_gateway_password mongo_token_service_password \
            mongo_notifier_password; do
    [ -s "secrets/$name" ] || openssl rand -hex 32 > "secrets/$name"
done
[ -s secrets/mongo_keyfile ] || openssl rand -base64 756 > secrets/mongo_keyfile
[ -s secrets/keyring.json ] || python3 -c 'import base64,json,os,secrets
kid = secrets.token_hex(4)
print(json.dumps({"current": kid, "keys": {kid: base64.b64encode(os.urandom(32)).decode()}}))' > secrets/keyring.json
# Each service's MongoDB connection string carries its own user, who may use its own database
# only (deploy/mongo/init-users.js creates them). mail-service uses no database.
for pair in job_gateway:fleetmail_gateway token_service:fleetmail_tokens notifier:fleetmail_notifier; do
    service="${pair%%:*}"
    database="${pair#*:}"
    [ -s "secrets/mongodb_uri_$service" ] || printf \
        'mongodb://%s:%s@%s/%s?replicaSet=rs0&authSource=%s&tls=true&tlsCAFile=/etc/fleetmail/tls/ca.pem\n' \
        "$(echo "$service" | tr _ -)" "$(cat "secrets/mongo_${service}_password")" "$MONGO_HOSTS" \
        "$database" "$database" > "secrets/mongodb_uri_$service"
done

# Internal keys (the CAs, NATS, MongoDB) are ECDSA P-256: as strong as RSA-3072, made in a
# fraction of the time, and spoken by every party inside. The public SMTP listener keeps RSA:
# devices that are a decade old may know no ECDSA cipher suite.
INTERNAL_KEY="ec -pkeyopt ec_paramgen_curve:prime256v1"

ca() {  # name, subject: a self-signed CA whose key stays under ca/
    # shellcheck disable=SC2086  # INTERNAL_KEY is several words on purpose
    [ -s "ca/$1-key.pem" ] || openssl req -x509 -newkey $INTERNAL_KEY -nodes -days 825 -subj "/CN=$2" \
        -keyout "ca/$1-key.pem" -out "ca/$1.pem" 2>/dev/null
}

issue() {  # CA name, key, certificate, subject, subjectAltName, extendedKeyUsage
    [ -s "$3" ] && return 0
    # shellcheck disable=SC2086
    openssl req -newkey $INTERNAL_KEY -nodes -subj "/CN=$4" -keyout "$2" -out "$3.csr" 2>/dev/null
    printf "subjectAltName=%s\nextendedKeyUsage=%s\n" "$5" "$6" > "$3.ext"
    openssl x509 -req -in "$3.csr" -CA "ca/$1.pem" -CAkey "ca/$1-key.pem" -CAcreateserial -days 825 \
        -extfile "$3.ext" -out "$3" 2>/dev/null
    rm -f "$3.csr" "$3.ext"
}

ca ca "fleetmail CA"
ca routes-ca "fleetmail NATS routes CA"
cp ca/ca.pem tls/ca.pem
issue ca tls/nats/server-key.pem tls/nats/server.pem "nats" \
    "DNS:nats-0,DNS:nats-1,DNS:nats-2,DNS:localhost" serverAuth
# A route is both ends of a TLS connection: server and client.
issue routes-ca tls/nats/routes-key.pem tls/nats/routes.pem "nats-route" \
    "DNS:nats-0,DNS:nats-1,DNS:nats-2" "serverAuth,clientAuth"
cp ca/routes-ca.pem tls/nats/routes-ca.pem
# Replica set members connect to each other (clientAuth); localhost: the user set-up (mongo-init).
issue ca tls/mongo/server-key.pem tls/mongo/server.pem "mongo" \
    "DNS:mongo-0,DNS:mongo-1,DNS:mongo-2,DNS:localhost" "serverAuth,clientAuth"
[ -s tls/mongo/server-bundle.pem ] || cat tls/mongo/server.pem tls/mongo/server-key.pem > tls/mongo/server-bundle.pem
rm -f tls/mongo/server-key.pem
cp ca/ca.pem tls/mongo/ca.pem
if [ ! -s tls/gateway/smtp.pem ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=$PUBLIC_HOST" \
        -addext "subjectAltName=DNS:$PUBLIC_HOST" -addext "extendedKeyUsage=serverAuth" \
        -keyout tls/gateway/smtp-key.pem -out tls/gateway/smtp.pem 2>/dev/null
fi

# An earlier secrets.sh shared one server key between NATS, MongoDB and the SMTP listener and
# left the CA key world-readable: that CA was replaced above (a new one under ca/); its files go.
for old in tls/ca-key.pem tls/ca.srl tls/server.pem tls/server-key.pem tls/server-bundle.pem \
           tls/server.csr tls/san.ext; do
    if [ -e "$old" ]; then rm -f "$old"; echo "removed $old (the previous, shared layout)"; fi
done

# Modes: keys and secrets 0600, certificates 0644, folders 0755 (their keys are 0600).
chmod 0700 ca secrets
chmod 0755 tls tls/nats tls/mongo tls/gateway
chmod 0600 ca/* secrets/* tls/nats/*-key.pem tls/mongo/server-bundle.pem tls/gateway/smtp-key.pem
chmod 0644 tls/ca.pem tls/nats/server.pem tls/nats/routes.pem tls/nats/routes-ca.pem \
    tls/mongo/server.pem tls/mongo/ca.pem tls/gateway/smtp.pem

# Owners: who reads each file inside its container.
SERVICE_FILES="secrets/nats_provisioner_password secrets/nats_job_gateway_password \
secrets/nats_token_service_password secrets/nats_mail_service_password secrets/nats_notifier_password \
secrets/gateway_admin_api_key secrets/gateway_device_secret_key secrets/gateway_api_key_hash_key \
secrets/keyring.json secrets/mongodb_uri_job_gateway secrets/mongodb_uri_token_service \
secrets/mongodb_uri_notifier tls/gateway/smtp-key.pem"
MONGOD_FILES="secrets/mongo_keyfile tls/mongo/server-bundle.pem"
if [ "$(id -u)" = 0 ]; then
    # shellcheck disable=SC2086
    chown "$SERVICE_UID:$SERVICE_UID" $SERVICE_FILES
    # shellcheck disable=SC2086
    chown "$MONGOD_UID:$MONGOD_UID" $MONGOD_FILES
else
    echo "not root: the files are yours (0600); on the Docker host run, as root:"
    echo "  chown $SERVICE_UID:$SERVICE_UID $SERVICE_FILES"
    echo "  chown $MONGOD_UID:$MONGOD_UID $MONGOD_FILES"
fi
echo "secrets in $(pwd)/secrets, certificates in $(pwd)/tls, CA keys in $(pwd)/ca (never mounted)"
