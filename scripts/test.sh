#!/usr/bin/env bash
# Runs every gpuconv test, GPU tests included, on a machine with or without a GPU.
#
# When no Vulkan driver is installed it installs Mesa's software one (lavapipe) first, so the GPU
# tests run on the CPU; and ffmpeg, chromium and chromium-driver when they are missing. That needs
# Debian/Ubuntu and root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Vulkan loader and at least one driver manifest, in either of the places drivers install them.
have_vulkan_driver() {
    ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' &&
        { compgen -G '/usr/share/vulkan/icd.d/*.json' || compgen -G '/etc/vulkan/icd.d/*.json'; } >/dev/null
}

if ! have_vulkan_driver; then
    echo "scripts/test.sh: no Vulkan driver found; installing Mesa's software Vulkan driver (mesa-vulkan-drivers)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

# ffmpeg pipes real video frames through `gpuconv stream` in tests/frames.rs.
if ! command -v ffmpeg >/dev/null; then
    echo "scripts/test.sh: installing ffmpeg (tests/frames.rs pipes frames through it)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq ffmpeg >/dev/null
fi

# tests/page.rs drives the page `gpuconv serve` serves in a headless chromium, via chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "scripts/test.sh: installing chromium and chromium-driver (tests/page.rs tries the service's page in a browser)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "scripts/test.sh: cargo not found: install Rust 1.88 or newer (https://rustup.rs)" >&2
    exit 1
fi

cargo test "$@"

# The Python package (python/): built with maturin into a virtual environment of its own and
# tested with pytest, both backends (lavapipe without a GPU). Skipped when arguments choose
# particular Rust tests.
if [ "$#" -eq 0 ]; then
    venv=target/python-venv
    if [ ! -x "$venv/bin/python" ]; then
        if ! python3 -m venv "$venv" 2>/dev/null; then
            echo "scripts/test.sh: installing python3-venv (the Python package is tested in a virtual environment)"
            sudo=""
            [ "$(id -u)" -eq 0 ] || sudo="sudo"
            export DEBIAN_FRONTEND=noninteractive
            $sudo apt-get update -qq
            $sudo apt-get install -y -qq python3-venv python3-pip >/dev/null
            rm -rf "$venv"
            python3 -m venv "$venv"
        fi
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "./python[test]"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
    "$venv/bin/python" -m pytest -q -p no:cacheprovider --doctest-modules "$("$venv/bin/python" -c 'import gpuconv, os; print(os.path.dirname(gpuconv.__file__))')/__init__.py"
fi
