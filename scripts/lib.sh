# Shell functions shared by the scripts of scripts/ and benches/load/ (sourced, not run).

# as_root CMD...: runs CMD as root: directly when root, else through sudo; without sudo it says
# what it needed and exits 1.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "${0##*/}: need root or sudo to run: $*" >&2
        exit 1
    fi
}
