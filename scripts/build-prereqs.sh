# Sourced by run-default.sh, test.sh and build-wheel.sh (after `cd` to the
# repository root, with PY set): what every build needs outside Python's own
# packages. Installs the missing ones with apt-get when run as root on
# Debian/Ubuntu; otherwise says what to install and exits 1.
need_apt=()
command -v g++ >/dev/null || need_apt+=(g++)
command -v make >/dev/null || need_apt+=(make)
"$PY" -c "import venv, ensurepip" 2>/dev/null || need_apt+=(python3-venv)
"$PY" -c "import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 1)" \
    || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
    else
        echo "missing: ${need_apt[*]} (install them, e.g. sudo apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
fi
