#!/usr/bin/env bash
# tests/integration/oci_overlay.sh - the writable root (issue 5, `bundle create --writable-root`):
# through the per-session overlay the agent (uid 1000, no capabilities) can install where
# packages go: /usr/local (bin, lib, ...), /opt, its home and /var/tmp, plus /tmp and /workspace
# as usual; it cannot remove or replace what the snapshot put there (the runner's own binary
# included) nor write to /etc or /usr/bin; the shared extracted snapshot stays byte for byte the
# same; another session (overlay or default) sees none of it; the default root stays read-only
# for the agent and the container root alike; rm leaves nothing behind. Real runc, as root.
. "$(dirname "$0")/oci_lib.sh"

oci_require
oci_setup

ST=$OCI_T/state
SNAPDIR=$OCI_SNAPDIR

leftovers() {
    local s=$1 out=
    [ -e "$ST/bundles/$s" ] && out="$out bundle"
    [ -e "$ST/runc/$s" ] && out="$out runc-state"
    ls -d /sys/fs/cgroup/*/"$OCI_CGROUP_PARENT/$s" /sys/fs/cgroup/"$OCI_CGROUP_PARENT/$s" \
        >/dev/null 2>&1 && out="$out cgroup"
    oci_mounts | grep -q "/bundles/$s/" && out="$out mount"
    echo "${out# }"
}

# The whole shared tree: names, types, modes, owners, sizes and file contents.
tree_sum() {
    (
        cd "$1" || exit 1
        find . -printf '%p %y %m %U:%G %s\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    ) | sha256sum | cut -d' ' -f1
}

# as_agent SESSION OUTFILE SCRIPT: run SCRIPT with /bin/sh as the agent uid in the session.
as_agent() {
    oci run "$1" -- /bin/oci_probe as-agent /bin/sh -c "$3" >"$OCI_T/$2" 2>&1
}
# Lines "name=ok|no" of a probe script: yes NAME CMD... / no NAME CMD... tries a command.
# shellcheck disable=SC2016 # expanded inside the container
PROBE='try() { n=$1; shift; if "$@" 2>/dev/null; then echo "$n=ok"; else echo "$n=no"; fi; }'

before=$(tree_sum "$SNAPDIR")

#-- -- an overlay session: the agent installs -- --
E=$(oci_session e)
oci_bundle e --writable-root
check_eq e_bundle_created "$?" 0
as_agent "$E" e.out "$PROBE
try usr_local_bin sh -c 'echo tool > /usr/local/bin/mytool && chmod 755 /usr/local/bin/mytool'
try usr_local_lib sh -c 'mkdir -p /usr/local/lib/python3/dist-packages/pkg && echo x > /usr/local/lib/python3/dist-packages/pkg/m.py'
try usr_local_share sh -c 'mkdir -p /usr/local/share/doc/pkg && echo x > /usr/local/share/doc/pkg/README'
try opt sh -c 'mkdir -p /opt/vendor/bin && echo x > /opt/vendor/bin/v'
try home sh -c 'echo x > /home/agent/.profile_test && mkdir -p /home/agent/.cache/pip && echo x > /home/agent/.cache/pip/c'
try var_tmp sh -c 'echo x > /var/tmp/f'
try tmp sh -c 'echo x > /tmp/f'
try workspace sh -c 'echo x > /workspace/f'
try own_file_rewritten sh -c 'echo y > /usr/local/bin/mytool && rm /usr/local/bin/mytool && echo z > /usr/local/bin/mytool'
try runner_visible test -x /usr/local/bin/runcell-runner
try runner_rm rm -f /usr/local/bin/runcell-runner
try runner_overwrite sh -c 'echo evil > /usr/local/bin/runcell-runner'
try runner_rename mv /usr/local/bin/runcell-runner /usr/local/bin/old
try runner_replace sh -c 'echo evil > /usr/local/bin/new && mv -f /usr/local/bin/new /usr/local/bin/runcell-runner'
try etc touch /etc/evil
try usr_bin touch /usr/bin/evil
try bin_sh_replace sh -c 'echo evil > /bin/sh'
try root_dir touch /evil
try chmod_usr_local chmod 700 /usr/local
echo done"
check_eq e_run_exit_0 "$?" 0
for k in usr_local_bin usr_local_lib usr_local_share opt home var_tmp tmp workspace \
    own_file_rewritten runner_visible; do
    check_eq "agent_can_$k" "$(pv "$OCI_T/e.out" "$k")" ok
done
# The sticky bit keeps the snapshot's files; /etc, /usr/bin and / stay the container root's.
for k in runner_rm runner_overwrite runner_rename runner_replace etc usr_bin bin_sh_replace \
    root_dir chmod_usr_local; do
    check_eq "agent_cannot_$k" "$(pv "$OCI_T/e.out" "$k")" no
done
as_agent "$E" e2.raw 'cat /usr/local/bin/mytool /opt/vendor/bin/v; stat -c "%u %a" /home/agent /usr/local/bin; head -c 4 /usr/local/bin/runcell-runner | od -c | head -n 1'
grep -v '^agent=' "$OCI_T/e2.raw" >"$OCI_T/e2.out"
check_eq overlay_kept_between_runs "$(sed -n 1,2p "$OCI_T/e2.out" | tr '\n' ' ')" "z x "
check_eq home_is_agents "$(sed -n 3p "$OCI_T/e2.out")" "1000 755"
check_eq usr_local_bin_sticky "$(sed -n 4p "$OCI_T/e2.out")" "0 1777"
t_check runner_binary_intact grep -q 'E   L   F' "$OCI_T/e2.out"
UP=$ST/bundles/$E/overlay/upper
t_check writes_land_in_upper test -f "$UP/usr/local/bin/mytool" -a -f "$UP/opt/vendor/bin/v"
t_check snapshot_has_no_new_files test ! -e "$SNAPDIR/usr/local/bin/mytool" -a ! -e "$SNAPDIR/opt/vendor"

#-- -- another session from the same snapshot sees nothing of it -- --
F=$(oci_session f)
oci_bundle f --writable-root
as_agent "$F" f.out "$PROBE
try sees_tool test -e /usr/local/bin/mytool
try sees_opt test -e /opt/vendor
try sees_home test -e /home/agent/.profile_test
try own_install sh -c 'echo f > /usr/local/bin/ftool'"
check_eq other_overlay_sees_nothing "$(grep -c '^sees_.*=no$' "$OCI_T/f.out")" 3
check_eq other_overlay_installs_too "$(pv "$OCI_T/f.out" own_install)" ok
G=$(oci_session g)
oci_bundle g
as_agent "$G" g.out "$PROBE
try sees_tool test -e /usr/local/bin/mytool
try agent_usr_local touch /usr/local/bin/x
try agent_opt touch /opt/x
try agent_home touch /home/agent/x
try agent_root touch /x"
check_eq default_sees_nothing "$(pv "$OCI_T/g.out" sees_tool)" no
for k in agent_usr_local agent_opt agent_home agent_root; do
    check_eq "default_root_readonly_$k" "$(pv "$OCI_T/g.out" "$k")" no
done
# The container root of a default session cannot write either (read-only mount, not modes).
oci run "$G" -- /bin/sh -c 'touch /usr/local/bin/x 2>&1; echo rc=$?' >"$OCI_T/g2.out" 2>&1
t_check default_root_readonly_for_root grep -q 'Read-only file system' "$OCI_T/g2.out"

#-- -- the shared snapshot is unchanged, and everything goes with rm -- --
for s in "$E" "$F" "$G"; do oci rm "$s" --purge-workspace >/dev/null 2>&1; done
check_eq snapshot_unchanged "$(tree_sum "$SNAPDIR")" "$before"
check_eq nothing_left "$(leftovers "$E")$(leftovers "$F")$(leftovers "$G")" ""
t_done
