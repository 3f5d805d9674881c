#!/usr/bin/env bash
# The main job: build the hardened XMPP profile into an image and prove it in a VM.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --locked
exec target/release/hardroot vm-test profiles/xmpp-test.toml vm-tests/xmpp-server "$@"
