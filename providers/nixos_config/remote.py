"""The POSIX shell program the provider runs on the target machine.

It is sent as the argument of ``sh -c`` (never on stdin, which activation
scripts might read), with a sub-command and its arguments after it.  Only
the key sub-commands read stdin: a key's content, which is never an argument.  Lines on
stdout starting with ``@@fp `` carry ``key=value`` results back; everything
else is the activation's own output, relayed to the log.

Sub-commands:

``state PROFILE MARKER``
    what is active now, the profile's generation, and the deployment record.
``deploy ACTION TOPLEVEL PROFILE MARKER USE_APPLY ON_FAILURE MAGIC_TIMEOUT TOKEN``
    activate (setting the profile for switch/boot), roll back on failure, arm
    the magic-rollback watchdog first when ``MAGIC_TIMEOUT`` > 0.
``confirm TOKEN``
    cancel the watchdog (atomically: exactly one of confirm and watchdog wins).
``delete PROFILE MARKER ON_DELETE``
    forget the deployment record; with ``rollback`` switch back to the
    generation that was active before the first deploy, if it still exists.

``key-put DIR NAME USER GROUP MODE OWNER_MAY_WAIT`` (the key's content on stdin)
    write one deployment key atomically: create ``DIR`` when missing (mode
    0751, owner root; an existing one is left as it is), create a temporary
    file in ``DIR`` under umask 077, give it to ``USER:GROUP`` with ``MODE``
    *before* writing the content, write stdin into it, rename it onto
    ``DIR/NAME``; then report the file as ``key-check`` does.  With
    ``OWNER_MAY_WAIT`` = 1 (a key uploaded before the activation that creates
    its user), a user or group the machine does not have yet leaves the file
    owned by root, with ``MODE``, and reports ``owner pending``.
    Every path it writes is listed in ``keys-written`` beside the records.
``key-check DIR NAME USER GROUP`` (the expected content on stdin)
    the key file's kind, owner and mode, and whether its content equals stdin
    (``cmp``: the content never leaves the machine, no hash is made).
``key-remove PATH...``
    remove each path that key-put wrote (listed in ``keys-written``) and that
    is a file or a symlink (never a directory); any other path is left alone
    and reported ``not_ours``.

The deployment record (``MARKER``, under ``/var/lib/fediversity-providers``)
holds ``baseline_gen``/``baseline_toplevel`` (what the profile held before the
first deploy) and ``previous`` (what was active before the current toplevel).
"""

SCRIPT = r"""
PATH=/run/wrappers/bin:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH
say() { printf '@@fp %s=%s\n' "$1" "$2"; }
# Every key file key-put wrote on this machine, one path a line: key-remove removes only these.
KEYS_WRITTEN_DIR=/var/lib/fediversity-providers/nixos_config
KEYS_WRITTEN=$KEYS_WRITTEN_DIR/keys-written
active() { [ -e /run/current-system ] && readlink -f /run/current-system || true; }
gen_of() {  # the generation number the profile points at, or nothing
  [ -L "$1" ] || return 0
  l=$(readlink "$1"); l=${l##*/}; l=${l%-link}; echo "${l##*-}"
}
gen_path() { [ -n "$2" ] && [ -e "$1-$2-link" ] && readlink -f "$1-$2-link" || true; }
get() { [ -f "$1" ] && sed -n "s/^$2=//p" "$1" | head -n 1 || true; }

cmd_state() {
  profile=$1 marker=$2
  say active "$(active)"
  g=$(gen_of "$profile"); say generation "$g"
  say profile_toplevel "$(gen_path "$profile" "$g")"
  if [ -f "$marker" ]; then
    say record 1
    say previous "$(get "$marker" previous)"
    say baseline_gen "$(get "$marker" baseline_gen)"
  else
    say record 0
  fi
}

stc() {  # stc TOPLEVEL ACTION: activate with switch-to-configuration
  "$1/bin/switch-to-configuration" "$2" </dev/null
}

restore() {  # restore ACTION PROFILE PREV_GEN PREV_ACTIVE NEW_GEN
  action=$1 profile=$2 prev_gen=$3 prev_active=$4 new_gen=$5
  rc=0
  case "$action" in
    switch|boot)
      if [ -n "$prev_gen" ]; then
        [ "$new_gen" = "$prev_gen" ] || nix-env -p "$profile" --switch-generation "$prev_gen" 2>&1 || rc=1
      elif [ -n "$new_gen" ]; then
        rm -f "$profile" "$profile-$new_gen-link"
      fi ;;
  esac
  target=$prev_active
  [ "$action" = boot ] && target=$(gen_path "$profile" "$prev_gen")
  if [ -n "$target" ] && [ -x "$target/bin/switch-to-configuration" ]; then
    stc "$target" "$action" 2>&1 || rc=2
  elif [ "$action" != boot ] && [ -z "$prev_active" ]; then
    rm -f /run/current-system
  fi
  return $rc
}

watchdog() {  # watchdog DIR TIMEOUT ACTION PROFILE PREV_GEN PREV_ACTIVE
  dir=$1 timeout=$2; shift 2
  waited=0
  while [ -e "$dir/armed" ] && [ ! -e "$dir/switched" ] && [ $waited -lt 9000 ]; do
    sleep 0.2; waited=$((waited + 1))
  done
  deadline=$(( $(date +%s) + timeout ))
  while [ -e "$dir/armed" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
  if mv "$dir/armed" "$dir/expired" 2>/dev/null; then
    echo "no confirmation within ${timeout}s: rolling back" >&2
    new_gen=$(cat "$dir/new_gen" 2>/dev/null)
    restore "$1" "$2" "$3" "$4" "$new_gen"
    echo $? > "$dir/rolled-back"
  fi
}

cmd_deploy() {
  action=$1 toplevel=$2 profile=$3 marker=$4 use_apply=$5 on_failure=$6 magic=$7 token=$8
  if [ ! -x "$toplevel/bin/switch-to-configuration" ]; then
    say error "$toplevel/bin/switch-to-configuration is missing: not a NixOS system toplevel"; exit 3
  fi
  prev_active=$(active)
  prev_gen=$(gen_of "$profile")
  say previous_active "$prev_active"
  say previous_generation "$prev_gen"
  dir=/run/fediversity-nixos-config/$token
  if [ "$magic" -gt 0 ]; then
    mkdir -p "$dir" && : > "$dir/armed" || { say error "cannot arm the watchdog in $dir"; exit 3; }
    ( trap '' HUP INT; watchdog "$dir" "$magic" "$action" "$profile" "$prev_gen" "$prev_active" ) \
      </dev/null >"$dir/watchdog.log" 2>&1 &
    say watchdog "$dir"
  fi
  rc=0
  if [ "$use_apply" = 1 ] && [ -x "$toplevel/bin/apply" ]; then
    say method apply
    "$toplevel/bin/apply" "$action" </dev/null || rc=$?
  else
    say method switch-to-configuration
    case "$action" in
      switch|boot)
        mkdir -p "$(dirname "$profile")"
        nix-env -p "$profile" --set "$toplevel" </dev/null || rc=$? ;;
    esac
    [ $rc -ne 0 ] || stc "$toplevel" "$action" || rc=$?
  fi
  new_gen=$(gen_of "$profile")
  [ "$magic" -gt 0 ] && { echo "$new_gen" > "$dir/new_gen"; echo $rc > "$dir/switched"; }
  say rc $rc
  if [ $rc -ne 0 ]; then
    [ "$magic" -gt 0 ] && mv "$dir/armed" "$dir/cancelled" 2>/dev/null
    if [ "$on_failure" = 1 ] && [ "$action" != dry-activate ]; then
      echo "activation failed (status $rc): rolling back"
      restore "$action" "$profile" "$prev_gen" "$prev_active" "$new_gen"
      say rolled_back $?
    fi
  elif [ "$action" != dry-activate ]; then
    previous=$prev_active
    if [ -f "$marker" ] && [ "$(get "$marker" toplevel)" = "$toplevel" ] && [ "$prev_active" = "$toplevel" ]; then
      previous=$(get "$marker" previous)
    fi
    baseline=$prev_gen
    [ -f "$marker" ] && baseline=$(get "$marker" baseline_gen)
    mkdir -p "$(dirname "$marker")"
    printf 'toplevel=%s\nprevious=%s\nbaseline_gen=%s\nprofile=%s\n' \
      "$toplevel" "$previous" "$baseline" "$profile" > "$marker.tmp" && mv "$marker.tmp" "$marker"
  fi
  cmd_state "$profile" "$marker"
}

cmd_confirm() {
  dir=/run/fediversity-nixos-config/$1
  if mv "$dir/armed" "$dir/confirmed" 2>/dev/null; then say confirm confirmed
  elif [ -e "$dir/expired" ]; then say confirm expired
  else say confirm missing
  fi
}

cmd_delete() {
  profile=$1 marker=$2 on_delete=$3
  if [ ! -f "$marker" ]; then say gone 1; exit 0; fi
  if [ "$on_delete" = rollback ]; then
    base=$(get "$marker" baseline_gen)
    target=$(gen_path "$profile" "$base")
    if [ -n "$target" ] && [ -x "$target/bin/switch-to-configuration" ]; then
      nix-env -p "$profile" --switch-generation "$base" </dev/null >&2 || exit 1
      stc "$target" switch || { say error "re-activating generation $base failed"; exit 1; }
      say rolled_back_to "$base"
    else
      say rollback_skipped "${base:-none}"
    fi
  fi
  rm -f "$marker"
  cmd_state "$profile" "$marker"
}

key_stat() {  # key_stat FILE USER GROUP: what the key file is, owned by whom, with which mode
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then say kind missing; return 0; fi
  if [ -L "$1" ] || [ ! -f "$1" ]; then say kind other; return 0; fi
  say kind file
  set -- "$1" "$2" "$3" $(stat -c '%u %g %a %U %G' "$1")
  uid=$(id -u "$2" 2>/dev/null || true)
  gid=$(getent group "$3" 2>/dev/null | cut -d: -f3 || true)
  if [ -n "$uid" ] && [ "$4" = "$uid" ]; then say user "$2"; else say user "$7"; fi
  if [ -n "$gid" ] && [ "$5" = "$gid" ]; then say group "$3"; else say group "$8"; fi
  say mode "$6"
}

cmd_key_put() {
  dir=$1 name=$2 user=$3 group=$4 mode=$5 may_wait=${6:-0}
  if [ ! -d "$dir" ]; then
    ( umask 022; mkdir -p "$dir" ) && chmod 0751 "$dir" || { say error "cannot create the directory $dir"; exit 1; }
  fi
  file=$dir/$name
  if [ -d "$file" ] && [ ! -L "$file" ]; then say error "$file is a directory"; exit 1; fi
  umask 077
  tmp=$(mktemp "$dir/.$name.XXXXXX") || { say error "cannot create a file in $dir"; exit 1; }
  trap 'rm -f "$tmp"' EXIT
  # owner and mode first: the content is never in a file anyone else could open
  if [ "$may_wait" = 1 ] && { ! id -u "$user" >/dev/null 2>&1 || ! getent group "$group" >/dev/null 2>&1; }; then
    say owner pending  # the new system creates them: root keeps the file until then
  elif ! why=$(chown "$user:$group" "$tmp" 2>&1); then
    say error "cannot give the key to $user:$group (do that user and group exist on the machine?): $why"; exit 1
  fi
  chmod "$mode" "$tmp" || { say error "cannot set mode $mode"; exit 1; }
  cat > "$tmp" || { say error "writing the key into $dir failed"; exit 1; }
  mv -f "$tmp" "$file" || { say error "cannot rename the key onto $file"; exit 1; }
  trap - EXIT
  # What key-remove may remove: only files key-put wrote (a tampered state
  # naming /etc/passwd as a key must not make an update delete it).
  mkdir -p "$KEYS_WRITTEN_DIR" && chmod 0700 "$KEYS_WRITTEN_DIR"
  grep -qxF -- "$file" "$KEYS_WRITTEN" 2>/dev/null || printf '%s\n' "$file" >> "$KEYS_WRITTEN"
  key_stat "$file" "$user" "$group"
  say content same
}

cmd_key_check() {
  file=$1/$2
  key_stat "$file" "$3" "$4"
  if [ -f "$file" ] && [ ! -L "$file" ]; then
    rc=0; cmp -s - "$file" || rc=$?
    case $rc in
      0) say content same ;;
      1) say content different ;;
      *) say content unknown ;;
    esac
  fi
}

cmd_key_remove() {
  for f in "$@"; do
    if ! grep -qxF -- "$f" "$KEYS_WRITTEN" 2>/dev/null; then say not_ours "$f"; continue; fi
    if [ -L "$f" ] || [ -f "$f" ]; then rm -f "$f" && say removed "$f"; fi
    grep -vxF -- "$f" "$KEYS_WRITTEN" > "$KEYS_WRITTEN.new" || true
    mv -f "$KEYS_WRITTEN.new" "$KEYS_WRITTEN"
  done
  return 0
}

sub=$1; shift
case "$sub" in
  state) cmd_state "$@" ;;
  deploy) cmd_deploy "$@" ;;
  confirm) cmd_confirm "$@" ;;
  delete) cmd_delete "$@" ;;
  key-put) cmd_key_put "$@" ;;
  key-check) cmd_key_check "$@" ;;
  key-remove) cmd_key_remove "$@" ;;
  *) echo "unknown sub-command $sub" >&2; exit 2 ;;
esac
"""
