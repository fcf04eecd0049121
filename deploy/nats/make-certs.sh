#!/bin/sh
# make-certs.sh DIR NAME=ADDRESS[,ADDRESS...] ...
#
# Makes a private CA for segbridge's NATS cluster in DIR (once: ca.pem and
# ca.key, which stays on the machine you run this on) and, for each NAME, a
# certificate NAME.pem and key NAME.key for that node's addresses (IP
# addresses or DNS names), good for the node's client port and for the
# routes between nodes (server and client authentication). With OpenSSL.
#
#   sh deploy/nats/make-certs.sh pki nats-1=10.0.0.11 nats-2=10.0.0.12 nats-3=10.0.0.13
set -eu
if [ $# -lt 2 ]; then
  echo "usage: $0 DIR NAME=ADDRESS[,ADDRESS...] ..." >&2
  exit 2
fi
dir=$1
shift
umask 077
mkdir -p "$dir"
cd "$dir"
if [ ! -f ca.key ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=segbridge NATS CA" -keyout ca.key -out ca.pem 2>/dev/null
fi
for spec in "$@"; do
  name=${spec%%=*}
  addrs=${spec#*=}
  if [ -z "$name" ] || [ "$name" = "$spec" ] || [ -z "$addrs" ]; then
    echo "$0: $spec: want NAME=ADDRESS[,ADDRESS...]" >&2
    exit 2
  fi
  san=""
  for a in $(echo "$addrs" | tr ',' ' '); do
    case $a in
      *:* | [0-9]*.[0-9]*.[0-9]*.[0-9]*) san="$san,IP:$a" ;;
      *) san="$san,DNS:$a" ;;
    esac
  done
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\nbasicConstraints=CA:FALSE\n' \
    "${san#,}" > "$name.ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$name.key" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  echo "$dir/$name.pem $dir/$name.key: $name (${san#,})"
done
chmod 644 ca.pem ./*.pem
