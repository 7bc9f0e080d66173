# shellcheck shell=bash
# ensure_venv: create .venv if missing and (re)install when requirements.lock, pyproject.toml or
# requirements-nodeps.txt changed since the last install. Every dependency comes from
# requirements.lock (exact versions and hashes; `bash scripts/lock.sh` refreshes it), so a fresh
# clone installs what CI tested.
ensure_venv() {
  local py="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
  local stamp=".venv/.installed-lock"
  local want
  want="$(cat requirements.lock pyproject.toml requirements-nodeps.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    python -m pip install --quiet --require-hashes -r requirements.lock
    # The project itself, built with the locked setuptools; its dependencies are all locked above.
    python -m pip install --quiet --no-deps --no-build-isolation -e .
    # Resemblyzer's speaker-encoder weights, without the torch/librosa it declares: voiceforge
    # runs the encoder itself (voices/embedding.py). Pinned by version and hash.
    python -m pip install --quiet --no-deps --require-hashes -r requirements-nodeps.txt
    echo "$want" > "$stamp"
  fi
}
