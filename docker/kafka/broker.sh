#!/bin/sh
# compose's Kafka broker, secured as the local launcher's is (civsync/services/kafka.py):
# every client listener is SASL_SSL with SCRAM-SHA-512, the broker's own connections log in
# as admin, the StandardAuthorizer allows only ACLs (`civsync kafka-users` makes each part's),
# and the KRaft controller listens on the container's loopback only.
#
# On its first start it makes a self-signed certificate with keytool (CIVSYNC_TLS_DIR:
# broker.p12, mode 0600, and ca.crt, the file clients verify the broker with) and formats the
# storage with admin's SCRAM credential; later starts reuse both. Then it runs the broker.
# The tests run this script with Kafka's jars from Maven Central (tests/integration/
# test_compose_broker.py), so what compose runs is what they check.
#
# Environment:
#   CIVSYNC_KAFKA_ADMIN_PASSWORD  admin's password (required; none of ` ,[]"` in it)
#   CIVSYNC_KAFKA_LISTENERS       e.g. SASL_SSL://0.0.0.0:9094,COMPOSE://0.0.0.0:19094
#   CIVSYNC_KAFKA_ADVERTISED      e.g. SASL_SSL://127.0.0.1:9094,COMPOSE://kafka:19094
#   CIVSYNC_KAFKA_NAMES           the certificate's names, e.g. dns:kafka,dns:localhost,ip:127.0.0.1
#   CIVSYNC_KAFKA_CONTROLLER_PORT (9093), CIVSYNC_KAFKA_DATA_DIR (/var/lib/kafka/data),
#   CIVSYNC_TLS_DIR (/etc/kafka/secrets), KAFKA_CLASSPATH (/opt/kafka/libs/*),
#   KAFKA_HEAP_OPTS (-Xms256m -Xmx768m), KAFKA_LOG4J_CONFIG (/opt/kafka/config/log4j2.yaml)
set -eu

: "${CIVSYNC_KAFKA_ADMIN_PASSWORD:?admin's password is required}"
: "${CIVSYNC_KAFKA_LISTENERS:?the client listeners are required}"
: "${CIVSYNC_KAFKA_ADVERTISED:?the advertised listeners are required}"
names="${CIVSYNC_KAFKA_NAMES:-dns:localhost,ip:127.0.0.1}"
controller_port="${CIVSYNC_KAFKA_CONTROLLER_PORT:-9093}"
data="${CIVSYNC_KAFKA_DATA_DIR:-/var/lib/kafka/data}"
tls="${CIVSYNC_TLS_DIR:-/etc/kafka/secrets}"
classpath="${KAFKA_CLASSPATH:-/opt/kafka/libs/*}"
password="$CIVSYNC_KAFKA_ADMIN_PASSWORD"
case "$password" in
  *[\ ,\[\]\"]*) echo "broker.sh: admin's password must not contain any of ' ,[]\"'" >&2; exit 2 ;;
esac

umask 077
mkdir -p "$data" "$tls"
if [ ! -f "$tls/broker.p12" ]; then
  head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$tls/keystore.password"
  keytool -genkeypair -alias broker -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA \
    -dname "CN=civsync compose Kafka broker" -validity 3650 \
    -ext "SAN=$names" -ext "BC:c=ca:true,pathlen:0" -ext "KU:c=digitalSignature,keyCertSign" \
    -ext "EKU=serverAuth" -storetype PKCS12 -keystore "$tls/broker.p12.new" \
    -storepass:file "$tls/keystore.password" 2>&1
  keytool -exportcert -rfc -alias broker -keystore "$tls/broker.p12.new" \
    -storepass:file "$tls/keystore.password" -file "$tls/ca.crt.new" 2>&1
  chmod 0644 "$tls/ca.crt.new"  # public: every client reads it
  mv "$tls/ca.crt.new" "$tls/ca.crt"
  mv "$tls/broker.p12.new" "$tls/broker.p12"
fi

jaas="org.apache.kafka.common.security.scram.ScramLoginModule required"
jaas="$jaas username=\"admin\" password=\"$password\";"
map="CONTROLLER:PLAINTEXT"
scram=""
for listener in $(echo "$CIVSYNC_KAFKA_LISTENERS" | tr ',' ' '); do
  name="${listener%%://*}"
  lower=$(echo "$name" | tr 'A-Z' 'a-z')
  map="$map,$name:SASL_SSL"
  scram="${scram}listener.name.$lower.scram-sha-512.sasl.jaas.config=$jaas
listener.name.$lower.sasl.enabled.mechanisms=SCRAM-SHA-512
"
done
inter="${CIVSYNC_KAFKA_LISTENERS%%://*}"  # the first listener: the broker's own connections

config="$data/server.properties"
cat > "$config" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=$CIVSYNC_KAFKA_LISTENERS,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=$CIVSYNC_KAFKA_ADVERTISED
controller.listener.names=CONTROLLER
listener.security.protocol.map=$map
inter.broker.listener.name=$inter
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.enabled.mechanisms=SCRAM-SHA-512
$scram
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$(cat "$tls/keystore.password")
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:ANONYMOUS
log.dirs=$data/kraft
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF

if [ ! -f "$data/kraft/meta.properties" ]; then
  cluster=$(java -cp "$classpath" kafka.tools.StorageTool random-uuid)
  java -cp "$classpath" kafka.tools.StorageTool format "--cluster-id=$cluster" \
    --config "$config" --add-scram "SCRAM-SHA-512=[name=admin,password=$password]"
fi
log4j="${KAFKA_LOG4J_CONFIG:-/opt/kafka/config/log4j2.yaml}"  # the image's: INFO to stdout
[ -f "$log4j" ] && set -- "-Dlog4j2.configurationFile=$log4j" "-Dkafka.logs.dir=$data/logs"
# shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of options
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m} "$@" -cp "$classpath" kafka.Kafka "$config"
