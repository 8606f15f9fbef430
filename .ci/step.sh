# Sourced by .ci/run (bash). step NAME CMD...: run CMD with its output in $CI_LOGS/NAME.log; print one
# line when it works, the last 200 lines of the log when it fails; return CMD's exit status.
step() {
  local name=$1 log="$CI_LOGS/$1.log" t0=$SECONDS rc=0
  shift
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    echo "ci: $name ok ($((SECONDS - t0)) s)"
  else
    echo "ci: $name FAILED (exit $rc, $((SECONDS - t0)) s); the last 200 lines of $log:"
    tail -n 200 "$log" | sed 's/^/  | /'
  fi
  return "$rc"
}
