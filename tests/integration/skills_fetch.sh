#!/usr/bin/env bash
# tests/integration/skills_fetch.sh - host-side skill download and unpacking (launcher/skills.c,
# protocol.md 15, docs/SKILLS.md) against the emulator, through tests/tools/skills_fetch with the
# session's own token: a tar.gz skill with a wrapper directory, a zip without one, a plain tar, a
# tar.xz, `latest` resolving to the newest version, links and special entries skipped; hostile
# zips (`..`, absolute name, a bomb over the cap), a hostile tar and two 404s refused with a
# clear reason, leaving nothing behind, while the others still land with the right layout and
# modes. Teardown (--remove) removes the directory.
# shellcheck source=tests/integration/emulator_lib.sh
. "$(dirname "$0")/emulator_lib.sh"

TOOL=$BUILD/tests/tools/skills_fetch
command -v python3 >/dev/null 2>&1 || {
    t_skip all "python3 not installed"
    exit 0
}
[ -x "$TOOL" ] || {
    t_fail tool_built "$TOOL not built"
    exit 1
}

# shellcheck disable=SC2119 # no emulator arguments
em_start
W=$EM_DIR/w
DEST=$EM_DIR/dest/skills
mkdir -p "$W" "$EM_DIR/dest"

# Archives are built by python3 (zipfile/tarfile can write what the tools refuse to).
python3 - "$W" <<'EOF'
import io, os, sys, tarfile, zipfile
w = sys.argv[1]

def tar_add(t, name, data=b"", mode=0o644, kind=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.linkname = kind, mode, link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

def skill_tar(path, mode, wrapper):
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as t:
        tar_add(t, wrapper + "/", kind=tarfile.DIRTYPE, mode=0o700)
        tar_add(t, wrapper + "/SKILL.md", b"---\nname: x\n---\nbody\n", 0o600)
        tar_add(t, wrapper + "/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o700)
        tar_add(t, wrapper + "/link", kind=tarfile.SYMTYPE, link="/etc/passwd")
        tar_add(t, wrapper + "/hard", kind=tarfile.LNKTYPE, link=wrapper + "/SKILL.md")
        tar_add(t, wrapper + "/fifo", kind=tarfile.FIFOTYPE)

skill_tar(f"{w}/pdf.tgz", "w:gz", "pdf")
skill_tar(f"{w}/plain.tar", "w", "wrapped")
skill_tar(f"{w}/xz.tar.xz", "w:xz", "xzskill")
with tarfile.open(f"{w}/v1.tar", "w") as t:
    tar_add(t, "VERSION", b"one\n")
with tarfile.open(f"{w}/v2.tar", "w") as t:
    tar_add(t, "VERSION", b"two\n")
with tarfile.open(f"{w}/evil.tar", "w") as t:
    tar_add(t, "ok.txt", b"fine\n")
    tar_add(t, "../escape.txt", b"bad\n")

def zinfo(name, mode=0o644):
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3
    zi.external_attr = (0o100000 | mode) << 16
    zi.compress_type = zipfile.ZIP_DEFLATED
    return zi

with zipfile.ZipFile(f"{w}/docx.zip", "w") as z:  # no wrapper: two top-level entries
    z.writestr(zinfo("SKILL.md"), b"docx skill\n" * 100)
    z.writestr(zinfo("scripts/conv.py", 0o755), b"print(1)\n")
    sl = zinfo("scripts/link")
    sl.external_attr = (0o120777) << 16
    z.writestr(sl, b"/etc/shadow")
with zipfile.ZipFile(f"{w}/dotdot.zip", "w") as z:
    z.writestr(zinfo("SKILL.md"), b"x\n")
    z.writestr(zinfo("../../escape.txt"), b"bad\n")
with zipfile.ZipFile(f"{w}/abs.zip", "w") as z:
    z.writestr(zinfo("SKILL.md"), b"x\n")
    z.writestr(zinfo("/tmp/escape.txt"), b"bad\n")
with zipfile.ZipFile(f"{w}/bomb.zip", "w") as z:  # 100 MiB of zeros, over the 64 MiB file cap
    with z.open(zinfo("SKILL.md"), "w") as f:
        chunk = bytes(1 << 20)
        for _ in range(100):
            f.write(chunk)
EOF
check archives_built test -s "$W/bomb.zip" -a -s "$W/xz.tar.xz"

# create_skill VAR NAME ARCHIVE [SKILL_ID]: the admin extension; VAR gets the skill id.
create_skill() {
    base64 -w0 "$3" >"$W/b64"
    jq -n --arg n "$2" --rawfile c "$W/b64" --arg id "${4-}" \
        '{name: $n, description: "d", content_base64: $c} + (if $id != "" then {skill_id: $id} else {} end)' \
        >"$W/body.json"
    NOBETA=1 req api POST /_emulator/v1/skills "@$W/body.json"
    [ "$ST" = 200 ] || t_fail "create_$2" "status $ST: $(head -c 200 "$EM_DIR/body")"
    printf -v "$1" '%s' "$(jb .skill_id)"
}

create_skill S_PDF "  tools/pdf " "$W/pdf.tgz"
create_skill S_DOCX docx "$W/docx.zip"
create_skill S_PLAIN plain "$W/plain.tar"
create_skill S_XZ "xz-skill" "$W/xz.tar.xz"
create_skill S_VER versioned "$W/v1.tar"
create_skill S_VER versioned "$W/v2.tar" "$S_VER"
V2=$(jb .id)
create_skill S_DOTDOT dotdot "$W/dotdot.zip"
create_skill S_ABS abs "$W/abs.zip"
create_skill S_BOMB bomb "$W/bomb.zip"
create_skill S_EVILTAR eviltar "$W/evil.tar"
create_skill S_DOTNAME ".." "$W/v1.tar"

mk_env ENV skills
mk_key ek "$ENV"
mk_agent AGENT
entries=""
for s in "$S_PDF" "$S_DOCX" "$S_PLAIN" "$S_XZ" "$S_VER" "$S_DOTDOT" "$S_ABS" "$S_BOMB" \
    "$S_EVILTAR" skill_doesnotexist "$S_DOTNAME"; do
    entries+="{\"type\":\"custom\",\"skill_id\":\"$s\",\"version\":\"latest\"},"
done
entries+="{\"type\":\"custom\",\"skill_id\":\"$S_PDF\",\"version\":\"999999\"}"
api POST "/v1/agents/$AGENT" "{\"version\":1,\"skills\":[$entries]}"
check_status agent_with_skills 200
mk_session SID "$AGENT" "$ENV"
poll_item ek "$ENV" WID TOKEN

RUNCELL_SKILLS_TOKEN=$TOKEN "$TOOL" --base-url "$B" --session-id "$SID" --dest "$DEST" \
    >"$W/out" 2>"$W/err"
RC=$?
check exit_1_some_failed test "$RC" = 1
check summary grep -qx 'summary ok=6 failed=6' "$W/out"
if [ "$RC" != 1 ] || ! grep -q summary "$W/out"; then
    echo "# out: $(cat "$W/out")"
    echo "# err: $(tail -n 5 "$W/err")"
fi
# shellcheck disable=SC2317 # called through check
not_in() { ! grep -qF -- "$1" "${@:2}"; }
check token_not_logged not_in "$TOKEN" "$W/out" "$W/err"

# The good ones: layout (wrapper stripped or not), content, modes, no links or specials.
mode() { stat -c %a "$1" 2>/dev/null; }
check pdf_ok grep -q "^ok $S_PDF [0-9]* pdf$" "$W/out"
check pdf_wrapper_stripped test -f "$DEST/pdf/SKILL.md"
check pdf_exec_kept test "$(mode "$DEST/pdf/bin/run.sh")" = 755
check pdf_file_0644 test "$(mode "$DEST/pdf/SKILL.md")" = 644
check pdf_dirs_0755 test "$(mode "$DEST/pdf")$(mode "$DEST/pdf/bin")" = 755755
check pdf_links_skipped test ! -e "$DEST/pdf/link" -a ! -L "$DEST/pdf/link" -a ! -e "$DEST/pdf/hard" -a ! -e "$DEST/pdf/fifo"
check docx_no_wrapper test -f "$DEST/docx/SKILL.md" -a -f "$DEST/docx/scripts/conv.py"
check docx_exec test "$(mode "$DEST/docx/scripts/conv.py")" = 755
check docx_symlink_skipped test ! -L "$DEST/docx/scripts/link" -a ! -e "$DEST/docx/scripts/link"
check docx_content test "$(head -c 11 "$DEST/docx/SKILL.md")" = "docx skill"
check plain_tar_named_by_skill test -f "$DEST/plain/SKILL.md" -a ! -e "$DEST/plain/wrapped"
check xz_tar test -x "$DEST/xz-skill/bin/run.sh"
check latest_resolved grep -q "^ok $S_VER $V2 versioned$" "$W/out"
check latest_content test "$(cat "$DEST/versioned/VERSION" 2>/dev/null)" = two
check dotdot_name_uses_id test -f "$DEST/$S_DOTNAME/VERSION"
check owner_is_us test "$(stat -c %u "$DEST/pdf/SKILL.md")" = "$(id -u)"

# The bad ones: refused with a reason, nothing left behind, nothing outside.
check dotdot_refused grep -q "^failed $S_DOTDOT .*'\.\.'" "$W/out"
check abs_refused grep -q "^failed $S_ABS .*absolute" "$W/out"
check bomb_refused grep -q "^failed $S_BOMB .*cap" "$W/out"
check eviltar_refused grep -q "^failed $S_EVILTAR .*'\.\.'" "$W/out"
check unknown_skill_404 grep -q "^failed skill_doesnotexist .*404" "$W/out"
check unknown_version_404 grep -q "^failed $S_PDF .*404" "$W/out"
check failures_logged grep -q '"level":"warn".*skills: .*failed' "$W/err"
check bad_left_nothing test ! -e "$DEST/dotdot" -a ! -e "$DEST/abs" -a ! -e "$DEST/bomb" -a ! -e "$DEST/eviltar"
check nothing_escaped test ! -e "$EM_DIR/dest/escape.txt" -a ! -e "$EM_DIR/escape.txt" -a ! -e /tmp/escape.txt
# shellcheck disable=SC2317 # called through check
no_staging() { ! find "$1" -maxdepth 1 -name '.staging-*' | grep -q .; }
check no_staging_left no_staging "$DEST"
check only_expected_dirs test "$(find "$DEST" -mindepth 1 -maxdepth 1 | wc -l)" = 6

# A second run replaces the skills in place (the old copy goes first) and --remove tears down.
echo stale >"$DEST/pdf/stale.txt"
RUNCELL_SKILLS_TOKEN=$TOKEN "$TOOL" --base-url "$B" --session-id "$SID" --dest "$DEST" --remove \
    >"$W/out2" 2>"$W/err2"
check second_run_same_summary grep -qx 'summary ok=6 failed=6' "$W/out2"
check teardown_removed test ! -e "$DEST"

# No credential: the version lookup is refused, every skill fails, the tool still reports.
"$TOOL" --base-url "$B" --session-id "$SID" --dest "$DEST" --token-env RC_NO_SUCH_VAR >"$W/out3" 2>&1
check no_token_setup_error test $? = 2
rm -rf "$DEST"
t_done
