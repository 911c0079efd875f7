#!/usr/bin/env bash
# Runs tests/test_torch.py and tests/test_keras.py against real PyTorch and TensorFlow
# Similarity, in the peer venvs made by ../shared/peers/setup_pml.sh and setup_tfsim.sh.
#   usage: run_framework_tests.sh VENVS_DIR      (holding pml/ and/or tfsim/)
# The venvs are not changed: the wheel and pytest are installed into target/py-extra-NAME
# and put on PYTHONPATH. Needs target/py-venv (made by .ci/run) for maturin.
set -euo pipefail
VENVS="$(cd "$1" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT="$(cd ../.. && pwd)"
"$ROOT/target/py-venv/bin/maturin" build --release -q -m Cargo.toml -o "$ROOT/target/wheels/framework"
WHEEL="$(ls -t "$ROOT"/target/wheels/framework/metric_loss-*.whl | head -1)"
status=0
for pair in pml:tests/test_torch.py tfsim:tests/test_keras.py; do
  name="${pair%%:*}" tests="${pair#*:}"
  if [ ! -x "$VENVS/$name/bin/python" ]; then
    echo "== $name: no venv at $VENVS/$name, skipped"
    continue
  fi
  extra="$ROOT/target/py-extra-$name"
  rm -rf "$extra"
  "$VENVS/$name/bin/python" -m pip install -q --no-deps --target "$extra" "$WHEEL"
  "$VENVS/$name/bin/python" -m pip install -q --target "$extra" pytest
  echo "== $name: $tests"
  PYTHONPATH="$extra" "$VENVS/$name/bin/python" -m pytest -q -p no:cacheprovider "$tests" || status=1
done
exit $status
