#!/usr/bin/env bash
# Prepares this machine to be an SSH target for the tests: the target users, their sudo rule,
# sshd's privilege-separation directory. Idempotent; changes nothing on a prepared machine.
#
# The sshd instances themselves are started per test (tests/it/support/sshd.rs), each in its
# own mount and PID namespace; this script only creates what they share with the machine:
#   salvetarget  unprivileged login user the executor connects as, with passwordless sudo
#                (/etc/sudoers.d/salve-testbed), as a real fleet's automation user would have;
#   salvenopw    a second login user with NO sudo rule, so a test can see `sudo -n` refuse;
#   salvelimited a login user whose sudo rule allows exactly the shipped service-restart
#                line (`timeout -k 5 65 systemctl restart *`): least privilege, as README shows.
# All get a home and bash; neither is root, because root's ~/.bashrc on these machines runs
# `pyenv init` (~130 ms per command) and a remediation should never need root's login anyway.
set -euo pipefail

readonly SUDOERS_DROP_IN=/etc/sudoers.d/salve-testbed
readonly USERS=(salvetarget salvenopw salvelimited)

if [[ $EUID -ne 0 ]]; then
  echo "setup-ssh-target: must run as root (it creates users and a sudoers drop-in)" >&2
  exit 1
fi

changed=0

for user in "${USERS[@]}"; do
  if ! getent passwd "$user" >/dev/null; then
    useradd --create-home --shell /bin/bash "$user"
    changed=1
  fi
  # useradd leaves the password locked ("!"); with `UsePAM no` sshd then refuses even key
  # logins. "*" means "no password can ever match" without the lock, so keys work.
  if [[ "$(getent shadow "$user" | cut -d: -f2)" != "*" ]]; then
    usermod -p '*' "$user"
    changed=1
  fi
done

# salvetarget may sudo anything, salvelimited one command line, both without a password
# (recipes run `sudo -n -- …`); salvenopw nothing.
sudoers_lines='salvetarget ALL=(ALL) NOPASSWD: ALL
salvelimited ALL=(root) NOPASSWD: /usr/bin/timeout -k 5 65 systemctl restart *'
if [[ ! -f $SUDOERS_DROP_IN ]] || [[ "$(grep -v '^#' "$SUDOERS_DROP_IN")" != "$sudoers_lines" ]]; then
  mkdir -p /etc/sudoers.d
  candidate="$(mktemp)"
  printf '# Created by salve scripts/testbed/setup-ssh-target.sh for the SSH test bed.\n%s\n' \
    "$sudoers_lines" >"$candidate"
  # A broken sudoers file would lock sudo for everyone: validate before installing.
  visudo -cf "$candidate" >/dev/null
  install -m 0440 -o root -g root "$candidate" "$SUDOERS_DROP_IN"
  rm -f "$candidate"
  changed=1
fi
# Debian's /etc/sudoers reads the drop-in directory; a machine whose sudoers does not would
# silently ignore the rule, so check the result rather than the file.
if ! sudo -l -U salvetarget 2>/dev/null | grep -q 'NOPASSWD: ALL'; then
  echo "setup-ssh-target: sudo does not grant salvetarget NOPASSWD (is #includedir /etc/sudoers.d in /etc/sudoers?)" >&2
  exit 1
fi

# sshd refuses to start without its privilege-separation directory; without systemd nothing
# creates it (/run is a tmpfs on most machines, so it vanishes on reboot).
if [[ ! -d /run/sshd ]]; then
  install -d -m 0755 /run/sshd
  changed=1
fi

if [[ $changed -eq 1 ]]; then
  echo "ssh target: users ${USERS[*]}, $SUDOERS_DROP_IN and /run/sshd prepared"
else
  echo "ssh target: already prepared"
fi
