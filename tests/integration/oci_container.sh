#!/usr/bin/env bash
# tests/integration/oci_container.sh - the locked-down container, seen from inside (issue 5):
# the probe reports id maps, capabilities (runner and agent), NoNewPrivs, seccomp, masked and
# read-only paths, writable dirs, network interfaces and mounts; then a fork bomb, a memory hog
# and a sleeper show the pids and memory limits and the wall-clock kill, and runc failures come
# back with runc's own message. Real runc, as root.
. "$(dirname "$0")/oci_lib.sh"

oci_require
oci_setup

S=$(oci_session probe)
if oci_bundle probe --memory 128M --pids 64 --hostname probe-host; then t_ok bundle_create; else
    t_fail bundle_create "$(cat "$OCI_T/bundle.out")"
    t_done
fi

# A credential in the CLI's own environment must not reach the container.
P=$OCI_T/probe.out
ANTHROPIC_API_KEY=sk-ant-api03-hostonly oci run "$S" -- /bin/oci_probe >"$P" 2>"$OCI_T/probe.err"
check_eq probe_exit_0 "$?" 0
check_eq probe_completed "$(pv "$P" done)" 1

# ---- users and capabilities ----
check_eq uid_map "$(pv "$P" uid_map)" "0 100000 65536"
check_eq gid_map "$(pv "$P" gid_map)" "0 100000 65536"
check_eq runner_uid_0_inside "$(pv "$P" runner.uid)" 0
# CAP_KILL (5), CAP_SETGID (6), CAP_SETUID (7): 0xe0, nothing else, in every set but inh/amb.
check_eq runner_caps_eff "$(pv "$P" runner.CapEff)" 00000000000000e0
check_eq runner_caps_prm "$(pv "$P" runner.CapPrm)" 00000000000000e0
check_eq runner_caps_bnd "$(pv "$P" runner.CapBnd)" 00000000000000e0
check_eq runner_caps_inh "$(pv "$P" runner.CapInh)" 0000000000000000
check_eq runner_caps_amb "$(pv "$P" runner.CapAmb)" 0000000000000000
check_eq runner_no_new_privs "$(pv "$P" runner.NoNewPrivs)" 1
check_eq runner_seccomp_filter "$(pv "$P" runner.Seccomp)" 2
check_eq agent_switch "$(pv "$P" agent)" switched
check_eq agent_uid "$(pv "$P" agent.uid)" 1000
check_eq agent_gid "$(pv "$P" agent.gid)" 1000
for set in CapEff CapPrm CapInh CapAmb; do
    check_eq "agent_${set}_empty" "$(pv "$P" "agent.$set")" 0000000000000000
done
check_eq agent_no_new_privs "$(pv "$P" agent.NoNewPrivs)" 1
check_eq agent_seccomp_filter "$(pv "$P" agent.Seccomp)" 2
check_eq agent_cannot_setuid_0 "$(pv "$P" agent.setuid0)" EPERM

# ---- seccomp: denied even where a capability would not matter ----
for who in runner agent; do
    check_eq "${who}_unshare_userns_denied" "$(pv "$P" "$who.unshare_user")" EPERM
    check_eq "${who}_mount_denied" "$(pv "$P" "$who.mount")" EPERM
    check_eq "${who}_io_uring_denied" "$(pv "$P" "$who.io_uring")" EPERM
done

# ---- masked and read-only paths ----
# A path the host kernel does not have is "absent" inside too; one it has must be masked.
for m in kcore:/proc/kcore keys:/proc/keys timer_list:/proc/timer_list \
    sched_debug:/proc/sched_debug scsi:/proc/scsi firmware:/sys/firmware; do
    key=${m%%:*} path=${m#*:}
    want=absent
    [ -e "$path" ] && want=masked
    check_eq "masked_$key" "$(pv "$P" "$key")" "$want"
done
check_eq proc_sys_read_only "$(pv "$P" proc_sys)" ro
want=none
[ -e /proc/sysrq-trigger ] && want=ro
check_eq proc_sysrq_read_only "$(pv "$P" proc_sysrq)" "$want"

# ---- filesystem ----
check_eq root_read_only "$(pv "$P" root)" ro
check_eq agent_root_read_only "$(pv "$P" agent.root)" ro
check_eq workspace_writable "$(pv "$P" agent.workspace)" rw
check_eq tmp_writable "$(pv "$P" agent.tmp)" rw
check_eq runner_state_writable "$(pv "$P" runner.state)" rw

# ---- network and identity ----
check_eq only_lo "$(pv "$P" net)" lo
check_eq hostname "$(pv "$P" hostname)" probe-host

# ---- no host files: every mount is one the config asked for (/mnt/memory: the memory stores' tmpfs) ----
bad=
for m in $(pv "$P" mounts); do
    case "$m" in
    / | /proc | /proc/* | /dev | /dev/* | /sys | /sys/* | /tmp | /run | /run/runcell | /workspace | /mnt/memory) ;;
    *) bad="$bad $m" ;;
    esac
done
check_eq only_config_mounts "$bad" ""
oci run "$S" -- /bin/sh -c 'ls -a /; echo ---; ls -a /workspace; echo ---; env' >"$OCI_T/ls.out" 2>&1
want_root=$(ls -a "$OCI_SNAPDIR" | grep -v '^\.\.\?$' | sort | tr '\n' ' ')
check_eq root_is_the_snapshot "$(sed -n '1,/^---$/p' "$OCI_T/ls.out" | grep -v -e '^---$' -e '^\.\.\?$' | sort | tr '\n' ' ')" \
    "$want_root"
check_eq workspace_starts_empty "$(sed -n '/^---$/,/^---$/p' "$OCI_T/ls.out" | grep -v -e '^---$' -e '^\.\.\?$' | tr '\n' ' ')" ""
if grep -q 'sk-ant-\|ANTHROPIC_API_KEY' "$OCI_T/ls.out"; then t_fail host_env_not_inherited; else t_ok host_env_not_inherited; fi
check_eq env_has_tool_uid "$(grep -c '^RUNCELL_TOOL_UID=1000$' "$OCI_T/ls.out")" 1
check_eq env_has_session_id "$(grep -c "^ANTHROPIC_SESSION_ID=$S\$" "$OCI_T/ls.out")" 1

# ---- snapshot owners through the idmapped mount ----
oci run "$S" -- /bin/sh -c 'stat -c "%u:%g" /bin/busybox /root; ls -a /root >/dev/null && echo root-dir-ok' \
    >"$OCI_T/own.out" 2>&1
check_eq snapshot_owned_by_container_root "$(head -n 2 "$OCI_T/own.out" | tr '\n' ' ')" "0:0 0:0 "
check_eq root_only_dir_usable_by_container_root "$(sed -n 3p "$OCI_T/own.out")" root-dir-ok

# ---- the real runner starts in the minimal snapshot (its libraries resolve, seccomp allows it) ----
if [ "$OCI_BASE" = minimal ] && ! grep -q '"runner_version": *"placeholder"' "$OCI_T/minimal.json"; then
    oci run "$S" -- /usr/local/bin/runcell-runner --help >"$OCI_T/runner.out" 2>&1
    check_eq runner_help_in_container "$?" 0
    # Without ids it refuses to start, naming the variable: the container env is all it gets.
    oci run "$S" -- /usr/local/bin/runcell-runner >"$OCI_T/runner2.out" 2>&1
    if [ $? -ne 0 ] && grep -q 'ANTHROPIC_ENVIRONMENT_ID' "$OCI_T/runner2.out"; then
        t_ok runner_sees_only_container_env
    else
        t_fail runner_sees_only_container_env "$(tail -n 3 "$OCI_T/runner2.out")"
    fi
else
    t_skip runner_in_container "no runner in the $OCI_BASE snapshot"
fi

# ---- limits ----
oci run "$S" -- /bin/oci_probe forkbomb >"$OCI_T/fork.out" 2>&1
made=$(pv "$OCI_T/fork.out" forkbomb.made)
if [ -n "$made" ] && [ "$made" -lt 64 ]; then t_ok forkbomb_contained_by_pids; else
    t_fail forkbomb_contained_by_pids "made '$made' processes (limit 64): $(tail -n 3 "$OCI_T/fork.out")"; fi
check_eq forkbomb_refused_with_eagain "$(pv "$OCI_T/fork.out" forkbomb.stopped_by)" EAGAIN

oci run "$S" -- /bin/oci_probe memhog 1024 >"$OCI_T/mem.out" 2>&1
check_eq memhog_killed "$(pv "$OCI_T/mem.out" memhog.child)" "signal 9"
check_eq memhog_container_survives "$(pv "$OCI_T/mem.out" memhog.survivor)" 1
top=$(sed -n 's/^memhog.touched_mb=//p' "$OCI_T/mem.out" | tail -n 1)
if [ -n "$top" ] && [ "$top" -lt 128 ]; then t_ok memhog_stopped_below_limit; else
    t_fail memhog_stopped_below_limit "touched '$top' MiB with a 128 MiB limit"; fi
# The host is fine: it can still fork and allocate.
t_check host_healthy_after_limits bash -c 'x=$(seq 1 100000 | wc -l); [ "$x" = 100000 ]'

# ---- wall clock, exit status ----
start=$(date +%s)
oci run "$S" --timeout 2 --grace 1 -- /bin/oci_probe sleep 120 >/dev/null 2>"$OCI_T/timeout.err"
check_eq wall_clock_exit_124 "$?" 124
elapsed=$(($(date +%s) - start))
if [ "$elapsed" -lt 60 ]; then t_ok wall_clock_kill_in_time; else t_fail wall_clock_kill_in_time "took ${elapsed}s"; fi
oci run "$S" -- /bin/oci_probe exit 7 >/dev/null 2>&1
check_eq exit_status_propagated "$?" 7

# ---- runc failures are explained with runc's words ----
oci run "$S" -- /no/such/binary >/dev/null 2>"$OCI_T/nobin.err"
check_eq missing_binary_fails "$?" 1
t_check runc_message_quoted grep -q 'runc create.*no such file or directory' "$OCI_T/nobin.err"
"$OCI" --state-dir "$OCI_T/state" --runc /no/such/runc run "$S" -- /bin/true >/dev/null 2>"$OCI_T/norunc.err"
check_eq runc_missing_fails "$?" 1
t_check runc_missing_message grep -q 'runc not executable at /no/such/runc' "$OCI_T/norunc.err"
env PATH=/nonexistent "$OCI" --state-dir "$OCI_T/state" run "$S" -- /bin/true >/dev/null 2>"$OCI_T/nopath.err"
t_check runc_not_on_path_message grep -q 'runc not found on PATH' "$OCI_T/nopath.err"

# ---- credentials never enter a config ----
C=$(oci_session cred)
n=0
for v in "--environment-id=env_sk-ant-api03-xyz" "--base-url=http://h/whsec_abc" \
    "--base-url=http://user:pass@api" "--https-proxy=http://user:pass@proxy:3128" \
    "--work-id=work_Bearer sk"; do
    n=$((n + 1))
    if oci bundle create "$C" --snapshot "$OCI_DIGEST" "$v" >/dev/null 2>"$OCI_T/cred.err"; then
        t_fail "credential_refused_$n" "accepted $v"
        oci rm "$C" --purge-workspace >/dev/null 2>&1
    else
        t_ok "credential_refused_$n"
    fi
    if grep -q 'sk-ant-api03-xyz\|whsec_abc\|user:pass' "$OCI_T/cred.err"; then
        t_fail "credential_not_echoed_$n" "$(cat "$OCI_T/cred.err")"
    fi
done
t_check credential_left_no_bundle test ! -e "$OCI_T/state/bundles/$C"

t_done
