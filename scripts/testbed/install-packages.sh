#!/usr/bin/env bash
# Installs the Debian packages the test bed needs, and only the missing ones; never starts their services.
#
# Idempotent and quiet when everything is present: on a prepared machine it makes no network
# call at all. On a fresh CI machine it runs `apt-get update` once, then one install.
set -euo pipefail

# The packages the tests run for real: Alertmanager, sshd (one private instance per test, see
# tests/it/support/sshd.rs) with sudo on the target for recipes that need root, and the SMTP
# capture server for later test suites; wrk for scripts/bench's intake load; the login
# shells of the target users that prove a command means the same whatever the user's shell
# (tests/it/login_shells.rs and src/recipe/shell.rs; `ksh` brings ksh93, `mksh` the MirBSD
# Korn shell); Prometheus and promtool for the mixin's tests (tests/it/mixin.rs);
# systemd-analyze and man for scripts/package-test (the unit verified, salve(1) found in the
# installed package); PostgreSQL 15 for the replicated store (scripts/testbed/postgres.sh
# starts a private cluster; the packaged one is never started).
readonly PACKAGES=(
  prometheus-alertmanager
  prometheus
  openssh-server
  openssh-client
  sudo
  python3-aiosmtpd
  iproute2
  curl
  openssl
  wrk
  zsh
  dash
  fish
  tcsh
  ksh
  mksh
  chromium chromium-driver
  systemd
  man-db
  postgresql-15
)

# Run a command as root: directly when we are root, else through sudo (CI images differ).
as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "install-packages: need root (or sudo) to run: $*" >&2
    return 1
  fi
}

package_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# Debian's maintainer scripts start every service they install (sshd on :22, Alertmanager
# on :9093) unless /usr/sbin/policy-rc.d exits 101. Those would squat on ports and outlive
# the tests, so make sure it exists before any install. It is left in place afterwards on
# purpose: removing it later would re-arm service starts for the next install, and a CI or
# container machine has no use for them.
ensure_policy_rc_d() {
  local policy=/usr/sbin/policy-rc.d
  if [[ -x $policy ]]; then
    local status=0
    "$policy" >/dev/null 2>&1 || status=$?
    if [[ $status -eq 101 ]]; then
      return 0
    fi
    echo "install-packages: $policy exists but exits $status, not 101; leaving it alone" >&2
    echo "install-packages: installed services may start on their default ports" >&2
    return 0
  fi
  echo "install-packages: creating $policy (exit 101) so installs start no services"
  as_root sh -c "printf '#!/bin/sh\n# Created by salve scripts/testbed/install-packages.sh: installs start no services.\nexit 101\n' > $policy && chmod 0755 $policy"
}

main() {
  local missing=()
  local package
  for package in "${PACKAGES[@]}"; do
    package_installed "$package" || missing+=("$package")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "packages: all ${#PACKAGES[@]} present"
    return 0
  fi

  echo "packages: installing ${missing[*]}"
  ensure_policy_rc_d
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"

  # Verify, rather than trust apt's exit status, that what the tests exec is really there.
  for package in "${missing[@]}"; do
    if ! package_installed "$package"; then
      echo "install-packages: $package is still not installed" >&2
      return 1
    fi
  done
}

main "$@"
