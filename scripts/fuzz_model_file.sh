#!/usr/bin/env bash
# Kept for existing callers: the model-file fuzz target of scripts/fuzz_target.sh.
# Usage: scripts/fuzz_model_file.sh [seconds=30] [build-dir=build-fuzz]
exec "$(dirname "$0")/fuzz_target.sh" model_file "${1:-30}" "${2:-$(cd "$(dirname "$0")/.." && pwd)/build-fuzz}"
