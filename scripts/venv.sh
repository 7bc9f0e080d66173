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
  want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -e ".${extras}"
    echo "$want" > "$stamp"
  fi
}
