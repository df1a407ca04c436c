#!/usr/bin/env bash
# The main job: build aliasnet, start the server on its embedded store and
# walk through seed 000's scenario (a subnet with a secondary range for
# containers, VMs with /24 alias ranges from it, one VM with a /27 plus
# /32s, a /32 moved between VMs). The server keeps running afterwards;
# Ctrl-C stops it. DEMO_EXIT=1 stops it after the walkthrough.
set -euo pipefail
cd "$(dirname "$0")/.."
ADDR="${ALIASNET_LISTEN:-127.0.0.1:8080}"
DATA="${ALIASNET_DATA:-./aliasnet-data}"
mkdir -p bin
go build -o bin/aliasnet ./cmd/aliasnet
bin/aliasnet serve --listen "$ADDR" --data-dir "$DATA" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 100); do curl -fs "http://$ADDR/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

export ALIASNET_SERVER="http://$ADDR" ALIASNET_PROJECT="${ALIASNET_PROJECT:-demo-$(date +%s)}"
an() { echo "+ aliasnet $*"; bin/aliasnet "$@"; echo; }

an networks create vpc --subnet-mode=custom
an subnets create subnet-a --network vpc --region us-central1 \
   --range 10.128.0.0/16 --secondary-range container-range=172.16.0.0/20
an instance-templates create containers \
   --network-interface "subnet=subnet-a,aliases=container-range:/24"
an instances create vm1 --zone us-central1-a --source-instance-template containers
an instances create vm2 --zone us-central1-a --source-instance-template containers
an instances create vm3 --zone us-central1-a \
   --network-interface "subnet=subnet-a,aliases=/27;10.128.7.29;10.128.7.30"
echo "# an alias that overlaps another VM's is refused:"
bin/aliasnet instances create vm4 --zone us-central1-a \
   --network-interface "subnet=subnet-a,aliases=container-range:172.16.0.0/24" || true
echo
echo "# move the migratable container 10.128.7.30 from vm3 to vm1:"
an instances network-interfaces update vm3 --zone us-central1-a --aliases "/27;10.128.7.29"
an instances network-interfaces update vm1 --zone us-central1-a \
   --aliases "container-range:172.16.0.0/24;10.128.7.30"
an instances list
an subnets describe subnet-a --region us-central1

if [ "${DEMO_EXIT:-}" = 1 ]; then exit 0; fi
echo "aliasnet is serving at http://$ADDR/compute/v1/ (project $ALIASNET_PROJECT); Ctrl-C stops it."
wait $SERVER
