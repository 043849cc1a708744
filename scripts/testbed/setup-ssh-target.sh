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
#                lines of its host's units (`timeout -k 5 65 systemctl restart shop-api`, …):
#                least privilege, as README shows.
#   salvesh-bash, -dash, -zsh, -fish, -tcsh, -ksh
#                one login user per login shell (group salvesh), for the login-shell matrix
#                (tests/it/login_shells.rs): sshd hands each command line to the user's shell,
#                so these prove a line means the same whatever shell reads it. Their sudo rule
#                allows exactly the argv recorder's line (tests/bed/bin/record-argv).
# All get a home, the first three bash; none is root, because root's ~/.bashrc on these
# machines runs `pyenv init` (~130 ms per command) and a remediation should never need root's
# login anyway.
set -euo pipefail

readonly SUDOERS_DROP_IN=/etc/sudoers.d/salve-testbed
readonly SHELL_SUDOERS_DROP_IN=/etc/sudoers.d/salve-testbed-shells
readonly USERS=(salvetarget salvenopw salvelimited)
# user:login shell (the paths Debian's packages list in /etc/shells).
readonly SHELL_USERS=(
  salvesh-bash:/bin/bash
  salvesh-dash:/bin/dash
  salvesh-zsh:/bin/zsh
  salvesh-fish:/usr/bin/fish
  salvesh-tcsh:/bin/tcsh
  salvesh-ksh:/bin/ksh93
)
readonly SHELL_GROUP=salvesh

if [[ $EUID -ne 0 ]]; then
  echo "setup-ssh-target: must run as root (it creates users and a sudoers drop-in)" >&2
  exit 1
fi

changed=0

if ! getent group "$SHELL_GROUP" >/dev/null; then
  groupadd "$SHELL_GROUP"
  changed=1
fi
for entry in "${SHELL_USERS[@]}"; do
  user=${entry%%:*}
  shell=${entry#*:}
  if [[ ! -x $shell ]]; then
    echo "setup-ssh-target: $shell is missing (scripts/testbed/install-packages.sh installs it)" >&2
    exit 1
  fi
  # A login shell must be listed in /etc/shells, as on a real host.
  if ! grep -qx "$shell" /etc/shells; then
    add-shell "$shell"
    changed=1
  fi
  if ! getent passwd "$user" >/dev/null; then
    useradd --create-home --shell "$shell" --groups "$SHELL_GROUP" "$user"
    changed=1
  fi
  if [[ "$(getent passwd "$user" | cut -d: -f7)" != "$shell" ]]; then
    usermod --shell "$shell" "$user"
    changed=1
  fi
  if ! id -nG "$user" | tr ' ' '\n' | grep -qx "$SHELL_GROUP"; then
    usermod --append --groups "$SHELL_GROUP" "$user"
    changed=1
  fi
done

for user in "${USERS[@]}" "${SHELL_USERS[@]%%:*}"; do
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

# Installs sudoers drop-in $1 with exactly the lines $2, unless it already has them.
install_sudoers() {
  local drop_in=$1 lines=$2
  if [[ -f $drop_in ]] && [[ "$(grep -v '^#' "$drop_in")" == "$lines" ]]; then
    return 0
  fi
  mkdir -p /etc/sudoers.d
  local candidate
  candidate="$(mktemp)"
  printf '# Created by salve scripts/testbed/setup-ssh-target.sh for the SSH test bed.\n%s\n' \
    "$lines" >"$candidate"
  # A broken sudoers file would lock sudo for everyone: validate before installing.
  visudo -cf "$candidate" >/dev/null
  install -m 0440 -o root -g root "$candidate" "$drop_in"
  rm -f "$candidate"
  changed=1
}

# salvetarget may sudo anything, salvelimited exactly the restart lines of the units its
# test host lists (`services = "shop-api,broken-api"`), both without a password (recipes run
# `sudo -n -- …`); salvenopw nothing.
install_sudoers "$SUDOERS_DROP_IN" 'salvetarget ALL=(ALL) NOPASSWD: ALL
salvelimited ALL=(root) NOPASSWD: /usr/bin/timeout -k 5 65 systemctl restart shop-api, /usr/bin/timeout -k 5 65 systemctl restart broken-api'
# The salvesh group may run exactly the argv recorder's line (10 s recipe timeout + 5).
install_sudoers "$SHELL_SUDOERS_DROP_IN" \
  '%salvesh ALL=(root) NOPASSWD: /usr/bin/timeout -k 5 15 /usr/local/bin/record-argv *'
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
  echo "ssh target: users ${USERS[*]} ${SHELL_USERS[*]%%:*}, $SUDOERS_DROP_IN, $SHELL_SUDOERS_DROP_IN and /run/sshd prepared"
else
  echo "ssh target: already prepared"
fi
