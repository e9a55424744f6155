# Sourced by the other scripts: makes sure Debian 12's packages for building, testing and
# running are present. As root it installs what is missing; otherwise it prints the line.
KIRIN_PACKAGES="meson ninja-build pkg-config g++ libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev libsoup-3.0-dev libjson-glib-dev libsqlite3-dev sqlite3
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-base-apps glib-networking
  python3-gi gir1.2-gstreamer-1.0 postgresql libpq-dev libges-1.0-dev ges1.0-tools tinyproxy"

kirin_ensure_packages() {
  local missing=()
  for p in $KIRIN_PACKAGES "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local log
    log=$(mktemp)
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
      >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      return 1
    fi
    rm -f "$log"
  else
    echo "Missing Debian packages. Install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

kirin_build() {
  local dir=${1:-build}
  [ -f "$dir/build.ninja" ] || meson setup "$dir" >/dev/null
  meson compile -C "$dir" -j 2
}
