# shellcheck shell=bash
# ensure_venv EXTRAS: create .venv if missing and (re)install the project when pyproject.toml
# changed since the last install. EXTRAS is "" or e.g. "[dev]".
ensure_venv() {
  local extras="$1"
  local py="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
  local stamp=".venv/.installed${extras}"
  local want
  want="$(cat pyproject.toml requirements-nodeps.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -e ".${extras}"
    # Resemblyzer's speaker-encoder weights, without the torch/librosa it declares: voiceforge
    # runs the encoder itself (voices/embedding.py). Pinned by version and hash.
    python -m pip install --quiet --no-deps --require-hashes -r requirements-nodeps.txt
    echo "$want" > "$stamp"
  fi
}
