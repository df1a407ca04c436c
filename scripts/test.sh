#!/usr/bin/env bash
# Runs every aliasnet test on a fresh Debian machine: installs the real
# tools the tests drive (iproute2, nftables, BIRD, netplan, ifupdown, dig,
# NetworkManager's offline nmcli) when they are missing, then vets and
# tests the whole module with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

# tool -> Debian package
declare -A pkgs=(
  [ip]=iproute2 [nft]=nftables [bird]=bird2 [birdc]=bird2 [netplan]=netplan.io
  [ifquery]=ifupdown [dig]=dnsutils [nmcli]=network-manager [unshare]=util-linux
)
missing=()
for tool in "${!pkgs[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkgs[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing test tools: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  # Keep package scripts from starting services (NetworkManager, BIRD)
  # on this machine: the tests start their own, inside namespaces.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$created_policy" ] && $sudo rm -f /usr/sbin/policy-rc.d
fi

export CI="${CI:-}"
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -timeout 25m -count=1 ./... 2>&1 | tee /tmp/aliasnet-test.log
